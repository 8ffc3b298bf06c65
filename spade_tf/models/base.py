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

    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable}
        config.update({key: getattr(self, key) for key in self.config_keys})
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        return cls(**config)
