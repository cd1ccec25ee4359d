"""The training engine: `train(TrainConfig(...))` -> TrainResult; probes plug in through ProbeContext."""

from bnlab.train.config import TrainConfig
from bnlab.train.loop import train
from bnlab.train.probe import Probe, ProbeContext
from bnlab.train.result import TrainResult

__all__ = ["Probe", "ProbeContext", "TrainConfig", "TrainResult", "train"]
