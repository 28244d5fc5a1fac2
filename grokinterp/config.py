"""``RunConfig``: everything that defines a run, and the named presets.

A config round-trips through JSON (``to_dict`` / ``from_dict``) and is saved as ``config.json``
in the run directory together with the command that made it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .models import ModelSpec, model_spec
from .tasks import MODULAR_OPS, Task, TaskError


OPTIMIZERS = ("adamw", "adamw-to-init", "grokfast", "perpendicular")
FLOAT_FIELDS = ("frac", "lr", "wd", "grokfast_alpha", "grokfast_lambda", "dropout", "update_noise", "weight_noise")
MAX_P = 2048  # p*p equations: the table, split and evaluation of a run hold them all (4.2M at most)


class ConfigError(ValueError):
    """A config value that cannot work."""


@dataclass(frozen=True)
class RunConfig:
    name: str
    task: str = "add"
    p: int = 113
    group: str | None = None  # group_* tasks: 'S4', 'D7', 'C3xS3', '(0,1,2);(0,1)' (tasks.GROUP_HELP)
    frac: float = 0.3
    split_seed: int = 598
    seed: int = 999  # model initialisation
    model: str = "nanda-1l"
    lr: float = 1e-3
    wd: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 10  # linear warm-up over this many updates
    batch_size: int | None = None  # None: full batch; else min(batch_size, half the train set)
    steps: int = 25_000
    checkpoint_every: int = 100
    log_checkpoints: bool = True  # extra log-spaced checkpoints before the first regular one
    optimizer: str = "adamw"  # adamw | adamw-to-init (weight decay toward the initial weights) | grokfast | perpendicular
    grokfast_alpha: float = 0.98
    grokfast_lambda: float = 2.0
    loss: str = "ce"  # ce | stablemax
    dropout: float = 0.0  # residual dropout on attention and MLP outputs while training (Power et al. Fig. 2: 0.1)
    update_noise: float = 0.0  # std of Gaussian noise added to every weight after each update
    weight_noise: float = 0.0  # std of Gaussian noise added to the weights for each forward pass (Power et al.: 0.01)
    checkpoint_dtype: str = "float32"  # float32 | float16 (storage only)
    attention_rate: float = 1.0  # alpha: attention = alpha * softmax + (1 - alpha) * uniform (Zhong et al. 2023); 1: standard
    weights_every: int | None = None  # weights only at multiples of this (and the first and last step); None: every checkpoint
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        model_spec(self.model)
        if self.task in MODULAR_OPS and self.p > MAX_P:
            raise ConfigError(f"p = {self.p} is too large: training holds all p*p = {self.p ** 2:,} equations (table, split, "
                              f"evaluation) in memory; use p <= {MAX_P} (at most {MAX_P ** 2:,} equations)")
        self.make_task()
        floats = {f: getattr(self, f) for f in FLOAT_FIELDS}
        checks = [
            (all(math.isfinite(v) for v in floats.values()),
             "settings must be finite numbers, got " + ", ".join(f"{f}={v}" for f, v in floats.items() if not math.isfinite(v))),
            (all(0 <= s < 2**63 for s in (self.seed, self.split_seed)),
             f"seeds must be integers in [0, 2**63), got seed={self.seed}, split_seed={self.split_seed}"),
            (all(0 <= b < 1 for b in self.betas), f"betas must be in [0, 1), got {self.betas}"),
            (self.warmup >= 0, f"warmup must be non-negative, got {self.warmup}"),
            (0 <= self.grokfast_alpha < 1, f"grokfast_alpha must be in [0, 1), got {self.grokfast_alpha}"),
            (0 < self.frac < 1, f"training fraction must be in (0, 1), got {self.frac}"),
            (self.steps >= 1, f"steps must be positive, got {self.steps}"),
            (self.checkpoint_every >= 1, f"checkpoint_every must be positive, got {self.checkpoint_every}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.wd >= 0, f"weight decay must be non-negative, got {self.wd}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"),
            (self.loss in ("ce", "stablemax"), f"unknown loss {self.loss!r}; choose ce or stablemax"),
            (self.checkpoint_dtype in ("float32", "float16"), f"checkpoint_dtype must be float32 or float16, got {self.checkpoint_dtype!r}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.update_noise >= 0 and self.weight_noise >= 0, "noise levels must be non-negative"),
            (self.weights_every is None or self.weights_every >= 1, f"weights_every must be positive, got {self.weights_every}"),
            (0 <= self.attention_rate <= 1, f"attention rate must be in [0, 1], got {self.attention_rate}"),
            (self.batch_size is None or self.batch_size >= 1, f"batch size must be positive, got {self.batch_size}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    def make_task(self) -> Task:
        try:
            return Task(self.task, self.p, op_token=model_spec(self.model).op_token, group_spec=self.group)
        except TaskError as e:
            raise ConfigError(str(e)) from None

    def effective_batch_size(self, n_train: int) -> int:
        """Full batch, or Power et al.'s min(batch_size, half the training set)."""
        return n_train if self.batch_size is None else max(1, min(self.batch_size, n_train // 2))

    def checkpoint_steps(self) -> list[int]:
        """0, log-spaced steps below the first regular checkpoint, every ``checkpoint_every``, the last."""
        steps = set(range(0, self.steps + 1, self.checkpoint_every)) | {self.steps}
        if self.log_checkpoints:
            k = 0
            while (s := round(10 ** (k / 4))) < self.checkpoint_every and s <= self.steps:
                steps.add(s)
                k += 1
        return sorted(steps)

    @property
    def spec(self) -> ModelSpec:
        """The run's ``ModelSpec``: its model's, with the run's attention rate. Every forward of the run's
        weights (analyses, explorer, evaluation) takes this spec, so none computes an alpha < 1 run as alpha = 1."""
        return dataclasses.replace(model_spec(self.model), attention_rate=self.attention_rate)

    @property
    def noisy(self) -> bool:
        """Whether training draws random numbers (dropout or noise)."""
        return self.dropout > 0 or self.update_noise > 0 or self.weight_noise > 0

    def keeps_weights(self, step: int) -> bool:
        """Whether a checkpoint step writes weights (every checkpoint writes metrics)."""
        return self.weights_every is None or step % self.weights_every == 0 or step == self.steps

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"config has unknown fields {sorted(unknown)}")
        return cls(**d)


PRESETS: dict[str, RunConfig] = {
    "modadd113": RunConfig(
        name="modadd113",
        description="Nanda et al. 2023: a+b mod 113, 30% data, 1-layer, full batch, AdamW wd 1",
    ),
    "s5": RunConfig(
        name="s5",
        task="s5_mul",
        p=0,
        frac=0.5,
        split_seed=0,
        seed=0,
        model="power-2l",
        batch_size=512,
        steps=15_000,
        checkpoint_every=250,
        description="Power et al. 2022: x*y in S5, 50% data, 2-layer, batch 512, AdamW wd 1",
    ),
    "tiny23": RunConfig(
        name="tiny23",
        p=23,
        frac=0.7,
        split_seed=0,
        seed=0,
        model="tiny-1l",
        lr=1e-2,
        steps=1_500,  # test accuracy 96% at 1,000 steps, 100% from 1,300 (torch 2.13 CPU)
        checkpoint_every=50,
        description="a+b mod 23 on a small 1-layer model: groks on a CPU in well under a minute",
    ),
}
PRESETS["s5-post"] = PRESETS["s5"].replace(
    name="s5-post",
    model="power-2l-post",
    steps=100_000,
    checkpoint_every=500,
    log_checkpoints=False,
    weights_every=10_000,
    checkpoint_dtype="float16",
    description="Power et al. 2022 Fig. 3: x*y in S5 in their own block (post-LN), 50% data, AdamW wd 1, "
                "1e5 steps (about 4 minutes on a GPU, hours on a CPU)",
)


def preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
