"""GauGAN: the trainer model that owns the generator, discriminator and encoder.

``GauGAN.train_step`` does what the reference does per batch: one generator step (GAN,
feature-matching, VGG and KL terms), then one discriminator step on a fresh fake from the
updated generator. The discriminator step judges fake and real in one batch (the two
concatenated, as the reference does). So does the generator step, except when the
discriminator uses instance norm: then it judges fake (training) and real (inference) in
two calls, which gives the stacked call's values without differentiating through the real
half. With ``ema_decay > 0`` the step ends by updating the exponential moving average of
the generator's (and encoder's) weights (:mod:`spade_tf.training.ema`), which inference
then uses. Losses are per example and reduced once over the global batch, so one step on 2
replicas equals one step on one device with the same global batch. Works with
``model.fit`` under no strategy, ``MirroredStrategy`` and ``MultiWorkerMirroredStrategy``.

:func:`build_trainer` builds it from a config; :func:`global_step` counts its updates.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from spade_tf import compat
from spade_tf.config import KL_REDUCTIONS, Config
from spade_tf.inference_rules import style_latent
from spade_tf.layers.semantic import SemanticInput
from spade_tf.models import (
    build_discriminator,
    build_encoder,
    build_generator,
    build_semantic_input,
)
from spade_tf.training import losses
from spade_tf.training.ema import GeneratorAverage
from spade_tf.training.optimizers import make_optimizer

LOSS_NAMES = ("g_total", "g_gan", "g_feature_matching", "g_vgg", "g_kl", "d_real", "d_fake",
              "d_total")


class GauGAN(compat.SkipSymbolicBuild, keras.Model):
    """Semantic image synthesis GAN trained with ``fit``.

    Batches are dicts with ``"label"`` int [B, H, W], ``"image"`` float [B, H, W, 3] in
    [-1, 1] and, when the semantic input uses instance edges, ``"instance"`` int [B, H, W]
    (what :func:`spade_tf.data.make_input_fn` yields).

    Args:
        generator, discriminator: the networks (see :mod:`spade_tf.models`).
        semantic_input: turns label (and instance) ids into the generator's input.
        encoder: the VAE style encoder, for generators built with ``use_vae=True``.
        vgg_features: callable images -> five feature maps for the perceptual loss
            (:func:`spade_tf.training.vgg.load_vgg_features`); needed when ``vgg_weight > 0``.
        gan_mode: ``"hinge"`` (the reference's), ``"least_squares"``, ``"original"``,
            ``"wasserstein"``.
        feature_matching_weight, vgg_weight, kl_weight: the reference's 10, 10, 0.05.
        kl_reduction: ``"global_mean"`` (the KL term averaged over the global batch, whatever
            its split) or ``"per_replica_sum"`` (the reference's: summed over each replica's
            examples, so its strength grows with the per-replica batch).
        ema_decay, ema_start_step: the exponential moving average of the generator's (and
            encoder's) weights, updated after every step (0: none, the reference's);
            ``average`` holds it (:class:`~spade_tf.training.ema.GeneratorAverage`).
            Build the model under the strategy scope it trains in.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model,
                 semantic_input: SemanticInput, encoder: keras.Model | None = None,
                 vgg_features: Callable | None = None, gan_mode: str = "hinge",
                 feature_matching_weight: float = 10.0, vgg_weight: float = 10.0,
                 kl_weight: float = 0.05, kl_reduction: str = "global_mean",
                 ema_decay: float = 0.0, ema_start_step: int = 1000, **kwargs):
        super().__init__(**kwargs)
        losses.check_gan_mode(gan_mode)
        if getattr(generator, "use_vae", False) and encoder is None:
            raise ValueError("the generator takes a style latent (use_vae=True): pass the "
                             "VAE encoder too.")
        if vgg_weight > 0 and vgg_features is None:
            from spade_tf.training.vgg import VGGWeightsError

            raise VGGWeightsError(
                f"GauGAN's VGG perceptual loss (vgg_weight={vgg_weight}) needs VGG19 "
                "features: pass vgg_features=spade_tf.training.load_vgg_features(path) "
                "(path: torchvision's vgg19-dcbb9e9d.pth or Keras's "
                "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, downloaded beforehand), "
                "or vgg_weight=0 to train without the term.")
        self.generator = generator
        self.discriminator = discriminator
        self.encoder = encoder
        self.semantic_input = semantic_input
        self.vgg_features = vgg_features
        self.gan_mode = gan_mode
        self.feature_matching_weight = feature_matching_weight
        self.vgg_weight = vgg_weight
        self.kl_weight = kl_weight
        if kl_reduction not in KL_REDUCTIONS:
            raise ValueError(f"kl_reduction={kl_reduction!r} is unknown: expected one of "
                             f"{list(KL_REDUCTIONS)}.")
        self.kl_reduction = kl_reduction
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}
        # A plain attribute: the averaged networks are no part of the trainer's weights.
        self.average = GeneratorAverage(
            {"generator": generator, **({"encoder": encoder} if encoder is not None else {})},
            ema_decay, ema_start_step) if ema_decay > 0 else None
        self.g_optimizer = None
        self.d_optimizer = None
        # The networks are built already; nothing for fit's symbolic build to trace.
        self.built = True

    # -- set-up ---------------------------------------------------------------------

    def compile(self, g_optimizer: keras.optimizers.Optimizer | None = None,
                d_optimizer: keras.optimizers.Optimizer | None = None, **kwargs):
        """Optimizers default to the reference's: Adam(0, 0.9), G 1e-4, D 4e-4 (TTUR).

        Under ``mixed_float16`` both are wrapped in a ``LossScaleOptimizer``. Other
        keyword arguments (``jit_compile``, ``run_eagerly``, ``steps_per_execution``) go
        to ``keras.Model.compile``.
        """
        super().compile(**kwargs)
        g_optimizer = g_optimizer or make_optimizer("torch_adam", 1e-4)
        d_optimizer = d_optimizer or make_optimizer("torch_adam", 4e-4)
        if keras.mixed_precision.dtype_policy().name == "mixed_float16":
            g_optimizer = _loss_scaled(g_optimizer)
            d_optimizer = _loss_scaled(d_optimizer)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        # Build now, so checkpoints can restore optimizer state before the first step.
        self.g_optimizer.build(self._generator_variables())
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def _generator_variables(self) -> list:
        variables = list(self.generator.trainable_variables)
        if self.encoder is not None:
            variables += list(self.encoder.trainable_variables)
        return variables

    @property
    def metrics(self) -> list:
        return list(self.trackers.values())

    # -- forward passes ---------------------------------------------------------------

    def semantic(self, data: dict):
        return self.semantic_input(data["label"], data.get("instance"))

    def _generate(self, semantic, real_image, training: bool):
        """(fake image, KL per example or None)."""
        inputs = {"semantic": semantic}
        kl = None
        if self.encoder is not None:
            encoded = self.encoder(real_image, training=training)
            mean, log_variance = encoded["mean"], encoded["log_variance"]
            noise = tf.random.normal(tf.shape(mean))
            inputs["latent"] = mean + noise * tf.exp(0.5 * log_variance)
            kl = losses.kl_divergence(mean, log_variance)
        return self.generator(inputs, training=training), kl

    def _discriminate(self, semantic, fake, real, training: bool):
        """D on fake and real stacked in one batch (as the reference does); split back."""
        outputs = self.discriminator(
            {"semantic": tf.concat([semantic, semantic], axis=0),
             "image": tf.concat([tf.cast(fake, real.dtype), real], axis=0)},
            training=training)
        fake_out = [[tf.split(f, 2, axis=0)[0] for f in scale] for scale in outputs]
        real_out = [[tf.split(f, 2, axis=0)[1] for f in scale] for scale in outputs]
        return fake_out, real_out

    def _discriminate_apart(self, semantic, fake, real):
        """D on fake (training), then on real as in inference: the stacked call's values
        when D normalizes each example on its own (instance norm) and has run spectral
        norm's power iteration on fake, without differentiating through the real half
        (the generator's loss reads D's features on real as constants)."""
        fake_out = self.discriminator(
            {"semantic": semantic, "image": tf.cast(fake, real.dtype)}, training=True)
        real_out = self.discriminator({"semantic": semantic, "image": real}, training=False)
        return fake_out, real_out

    def call(self, inputs: dict, training: bool = False, weights: str | None = None):
        """Label ids (and instance ids, and a style photo or latent) -> image in [-1, 1].

        The latent follows :mod:`spade_tf.inference_rules`: the photo's encoded mean, else random.
        ``weights``: "ema" (the averaged generator and encoder), "raw" (the trained ones) or
        None: the averaged ones where the model averages and ``training`` is off.
        """
        if weights is None:
            weights = "ema" if self.average is not None and not training else "raw"
        if weights == "ema" and self.average is None:
            raise ValueError("weights='ema': this GauGAN keeps no average (ema_decay=0).")
        networks = self.average.networks if weights == "ema" else {
            "generator": self.generator, "encoder": self.encoder}
        generator, encoder = networks["generator"], networks.get("encoder")
        semantic = self.semantic(inputs)
        generator_inputs = {"semantic": semantic}
        if encoder is not None:
            generator_inputs["latent"] = inputs["latent"] if "latent" in inputs else style_latent(
                encoder, generator.latent_dim, tf.shape(semantic)[0],
                photo=inputs.get("image"))
        return generator(generator_inputs, training=training)

    # -- losses -----------------------------------------------------------------------

    def _global_mean(self, per_example):
        """Per-example values -> this replica's share of the global-batch mean."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch = tf.shape(per_example)[0] * replicas
        return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)

    def generator_losses(self, data: dict, training: bool = True, semantic=None) -> dict:
        """Per-example generator loss terms (weighted) and their total.

        ``semantic``: ``self.semantic(data)`` when already made (``train_step`` makes it
        once for its three passes).
        """
        real = tf.cast(data["image"], tf.float32)
        semantic = self.semantic(data) if semantic is None else semantic
        fake, kl = self._generate(semantic, real, training)
        if training and getattr(self.discriminator, "norm_type", None) == "instance":
            fake_out, real_out = self._discriminate_apart(semantic, fake, real)
        else:
            fake_out, real_out = self._discriminate(semantic, fake, real, training)
        terms = {"g_gan": losses.generator_gan_loss(fake_out, self.gan_mode)}
        zeros = tf.zeros_like(terms["g_gan"])
        terms["g_feature_matching"] = (self.feature_matching_weight
                                       * losses.feature_matching_loss(real_out, fake_out)
                                       if self.feature_matching_weight else zeros)
        terms["g_vgg"] = (self.vgg_weight * losses.vgg_loss(self.vgg_features, fake, real)
                          if self.vgg_weight else zeros)
        if kl is not None and self.kl_reduction == "per_replica_sum":
            # The reference sums KL over each GPU's examples: as a per-example value reduced
            # over the global batch, that is each KL times the replica's batch size.
            kl = kl * tf.cast(tf.shape(kl)[0], kl.dtype)
        terms["g_kl"] = self.kl_weight * kl if kl is not None else zeros
        terms["g_total"] = tf.add_n(list(terms.values()))
        return terms

    def fresh_fake(self, data: dict, training: bool = True, semantic=None):
        """The generator's image for the discriminator step, as a constant."""
        real = tf.cast(data["image"], tf.float32)
        semantic = self.semantic(data) if semantic is None else semantic
        fake, _ = self._generate(semantic, real, training)
        return tf.stop_gradient(fake)

    def discriminator_losses(self, data: dict, training: bool = True, fake=None,
                             semantic=None) -> dict:
        """Per-example discriminator loss terms on a fresh (fixed) fake.

        ``fake``: that image when already made (``train_step`` makes it outside the
        discriminator's gradient tape, which need not record the generator's forward);
        ``semantic``: as for :meth:`generator_losses`.
        """
        real = tf.cast(data["image"], tf.float32)
        semantic = self.semantic(data) if semantic is None else semantic
        if fake is None:
            fake = self.fresh_fake(data, training, semantic)
        fake_out, real_out = self._discriminate(semantic, fake, real, training)
        d_real, d_fake = losses.discriminator_losses(real_out, fake_out, self.gan_mode)
        return {"d_real": d_real, "d_fake": d_fake, "d_total": d_real + d_fake}

    # -- steps ------------------------------------------------------------------------

    # fit's symbolic build is skipped (compat.SkipSymbolicBuild): a workaround for
    # keras-team/keras#20585 (Keras 3.15). Under a distribution strategy fit first pulls one
    # batch and averages it with strategy.reduce to trace the model symbolically;
    # MultiWorkerMirroredStrategy cannot reduce a dict of per-replica tensors and fit fails
    # before the first step. GauGAN's networks are built when it is constructed and it
    # compiles no losses or metrics, so there is nothing to build.

    def _update(self, optimizer, tape, scaled_loss, variables) -> None:
        """Apply the gradients of ``scaled_loss`` (scaled inside the tape, for float16)."""
        optimizer.apply(tape.gradient(scaled_loss, variables), variables)

    def _track(self, terms: dict) -> dict:
        """Update the loss trackers; returns the logs of this step."""
        for name, values in terms.items():
            self.trackers[name].update_state(tf.reduce_mean(values))
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        if _multi_worker():
            # Second part of the keras-team/keras#20585 workaround: across workers fit
            # averages step results with strategy.reduce(..., axis=0), which fails on
            # scalars; shape [1] averages to the same value (Keras logs it as a float).
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def train_step(self, data: dict) -> dict:
        # Memory (the same values either way). Traced into a graph, an op runs as soon as
        # its inputs exist, and what it makes is held until its last reader has run:
        # - one semantic map for the three passes: a second one for the fresh fake needs
        #   only the batch, so it was made at the start and held through the G step's
        #   peak;
        # - the D step's ops wait for the fresh fake (control dependency): those that need
        #   only the batch and D's weights (the stacked semantic map, the spectrally
        #   normalized kernels, parts of their gradients) ran at the start too, and were
        #   held through the G step. Together ~170 MiB at 256x256 (docs/benchmarks.md).
        semantic = self.semantic(data)
        generator_variables = self._generator_variables()
        with tf.GradientTape() as tape:
            g_terms = self.generator_losses(data, training=True, semantic=semantic)
            g_loss = self.g_optimizer.scale_loss(self._global_mean(g_terms["g_total"]))
        self._update(self.g_optimizer, tape, g_loss, generator_variables)

        discriminator_variables = self.discriminator.trainable_variables
        fake = self.fresh_fake(data, training=True, semantic=semantic)
        with tf.GradientTape() as tape, tf.control_dependencies([fake]):
            d_terms = self.discriminator_losses(data, training=True, fake=fake,
                                                semantic=semantic)
            d_loss = self.d_optimizer.scale_loss(self._global_mean(d_terms["d_total"]))
        self._update(self.d_optimizer, tape, d_loss, discriminator_variables)
        if self.average is not None:  # the weights as the step leaves them
            self.average.update()
        return self._track({**g_terms, **d_terms})

    def test_step(self, data: dict) -> dict:
        return self._track({**self.generator_losses(data, training=False),
                            **self.discriminator_losses(data, training=False)})


def _multi_worker() -> bool:
    strategy = tf.distribute.get_strategy()
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and compat.in_multi_worker_mode(strategy))


def _loss_scaled(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)


def build_trainer(config: Config, vgg_features: Callable | None = None) -> GauGAN:
    """GauGAN with its networks and optimizers, under the current strategy scope."""
    model = config.model
    train = config.train
    if train.vgg_weight > 0 and vgg_features is None:
        from spade_tf.training.vgg import load_vgg_features

        vgg_features = load_vgg_features(train.vgg_weights_path)
    trainer = GauGAN(
        generator=build_generator(model),
        discriminator=build_discriminator(model),
        encoder=build_encoder(model) if model.use_vae else None,
        semantic_input=build_semantic_input(model),
        vgg_features=vgg_features,
        gan_mode=train.gan_mode,
        feature_matching_weight=train.feature_matching_weight,
        vgg_weight=train.vgg_weight,
        kl_weight=train.kl_weight,
        kl_reduction=train.kl_reduction,
        ema_decay=train.ema_decay,
        ema_start_step=train.ema_start_step,
    )
    trainer.compile(
        g_optimizer=make_optimizer(train.optimizer, train.g_learning_rate, train.beta_1,
                                   train.beta_2),
        d_optimizer=make_optimizer(train.optimizer, train.d_learning_rate, train.beta_1,
                                   train.beta_2),
        jit_compile=train.jit_compile,
    )
    return trainer


def _optimizer_variables_owner(optimizer):
    return optimizer.inner_optimizer if isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer) else optimizer


def global_step(trainer: GauGAN) -> int:
    """Generator updates so far: one per batch, except under ``mixed_float16``, whose loss
    scaler skips steps with overflowing gradients (``train`` counts batches itself)."""
    return int(_optimizer_variables_owner(trainer.g_optimizer).iterations.numpy())
