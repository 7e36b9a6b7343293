"""The dashboard's pages, in navigation order. Each module has PATH, TITLE, layout(feed, actions) and
register(app, feed, actions)."""

from dashboard.pages import alerts, capacity, firmware, hub, network, overview, scenario, switching

PAGES = (overview, network, capacity, firmware, switching, alerts, hub, scenario)
