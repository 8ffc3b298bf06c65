"""Serving side of spade-tf: an embedded TF Serving-compatible gRPC server and its client.

- :mod:`serving.server`: ``SpadeServer``, the ``tensorflow.serving`` PredictionService and
  ModelService (plus gRPC health) over the versions ``spade-export`` writes;
- :mod:`serving.model_manager`: finding, loading, warming up and hot-swapping versions;
- :mod:`serving.client`: ``SpadeClient``, for this server and for TensorFlow Serving alike;
- :mod:`serving.cli`: the ``spade-serve`` and ``spade-synthesize`` commands.
"""
