"""Guard tour (issue 6): tour plans, the tour engine, reader faults.

Modules: ``observation`` (what readers hand over), ``plan`` (config → rounds),
``rounds`` (one round's state and how a hit is judged), ``engine`` (the rules:
hits and deadlines → events), ``faults`` (reader offline, low battery),
``service`` (the daemon's tasks). Kept import-free so drivers can import
``gateway.patrol.observation`` cheaply.
"""
