"""The RL stage's torchrun entry: `torchrun ... -m fineforge.model.rl --config FILE` (see model/rl/stage.py)."""

from fineforge.model.rl.stage import RLStage
from fineforge.model.rl.stage_config import RLConfig
from fineforge.model.trainer import main

if __name__ == "__main__":
    main(RLStage, RLConfig)
