"""Training the default: (text, question, short answer) rows built from local data, then the paper's recipe.

`data` builds the rows (evaluation sets stay out); `train` learns to answer
(LoRA, top layers or full), resumable, and exports an adapter the engine loads;
`soup` blends LoRA adapters trained from one start into one.
"""

from inbedder.errors import TrainingError
from inbedder.training.data import DataOptions, build_training_rows
from inbedder.training.soup import average_adapters
from inbedder.training.trainer import TrainConfig, train

__all__ = ["DataOptions", "TrainConfig", "TrainingError", "average_adapters", "build_training_rows", "train"]
