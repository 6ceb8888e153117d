"""Cross-lingual alignment baselines: MIST, MIDALIGN and CLO, trained with Optax on a device mesh.

    from jaxsteer.cla import load_config, train
    result = train(load_config("configs/cla/tiny_midalign.yaml", {"out": "runs/x"}))  # or resume=True
    # result["export"] is an HF folder (LoRA merged) for jaxsteer.load_pretrained / jaxsteer eval

Modules: :mod:`~jaxsteer.cla.config` (the YAML as frozen dataclasses), :mod:`~jaxsteer.cla.losses` (the loss
formulas and the objectives), :mod:`~jaxsteer.cla.lora` (LoRA, trainable labels, the training forward),
:mod:`~jaxsteer.cla.data` (the deterministic pipeline), :mod:`~jaxsteer.sharding` (sharding),
:mod:`~jaxsteer.cla.trainer` (optimizer, jitted steps, the loop). The EN-steering baseline needs no
training: it is the EN vector at layer l1 applied with ``jaxsteer.Steering``.
"""

from jaxsteer.cla.config import TrainConfig
from jaxsteer.cla.config import load as load_config
from jaxsteer.cla.trainer import TrainingDivergedError, train

__all__ = ["TrainConfig", "TrainingDivergedError", "load_config", "train"]
