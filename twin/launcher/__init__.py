"""Starting the twin's processes and knowing they are ready: `twin up` on this machine (up.py: the
engine in-process, the API, its replica processes, the dashboard), the children's side of it
(child.py: readiness files, dying with the parent; no dependencies, so the dashboard can use it),
and runs on a Ray cluster as Ray jobs (cluster.py)."""
