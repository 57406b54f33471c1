"""Ray Serve and BentoML, run by the throughput benchmark next to inferq.

Each runs from a virtualenv of its own (venvs.py); its app (ray_app.py, bento_service.py)
shares the models, batched prediction and the counting of model calls (serving.py).
"""
