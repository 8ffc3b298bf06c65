"""Serving side of spade-tf: an embedded TF Serving-compatible server, its client, the painter.

- :mod:`serving.server`: ``SpadeServer``, the ``tensorflow.serving`` PredictionService and
  ModelService (plus gRPC health) over the versions ``spade-export`` writes, and with a REST
  port TF Serving's REST API too;
- :mod:`serving.rest`: TF Serving's REST API (and the painter's static files);
- :mod:`serving.model_manager`: finding, loading, warming up and hot-swapping versions;
- :mod:`serving.base_path`: what a model base path must hold (checked before TensorFlow loads);
- :mod:`serving.client`: ``SpadeClient``, for this server and for TensorFlow Serving alike;
- ``serving/painter/``: the GauGAN painter page; ``serving/deploy/``: TF Serving set-ups.

The ``spade-serve`` and ``spade-synthesize`` commands are in :mod:`spade_cli`.
"""
