"""The live operations dashboard: a Plotly Dash app served by FastAPI, a client of the gRPC API only."""
