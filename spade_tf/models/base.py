"""The shared base of the networks: functional models configured by their arguments."""

from __future__ import annotations

import keras


class ConfiguredModel(keras.Model):
    """A functional ``keras.Model`` subclass whose config is its constructor arguments.

    Subclasses build their graph in ``__init__`` from named ``keras.Input``s, store
    each argument as a same-named attribute and list the names in ``config_keys``;
    ``from_config`` then simply calls the constructor again.
    """

    config_keys: tuple[str, ...] = ()

    def call(self, inputs, training=None, mask=None):
        # An unspecified phase means inference. Left as None, Keras lets a layer with a
        # training default of its own (the encoder's Resizing preprocessing layer) set
        # the phase for the layers after it: spectral norm then ran power iterations
        # and changed its stored vectors on a plain ``encoder(photo)`` call.
        return super().call(inputs, training=False if training is None else training,
                            mask=mask)

    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable}
        config.update({key: getattr(self, key) for key in self.config_keys})
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        return cls(**config)
