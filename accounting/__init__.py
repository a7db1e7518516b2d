"""Carbon accounting: sites and boundaries, the factor library, inventories, heat KPIs and boiler baselines,
carbon-efficiency ratings (碳效码) and their JSON routes.

It reads committed state through the node's read interfaces and writes only by signed txs of its own kinds
(``KINDS``), which the composition root registers with the node like every other kind.
"""
