"""Model configurations: ``paper`` (UnifyGeo as published), ``vigor`` (the layout of the
authors' released VIGOR checkpoints) and ``small`` (CPU-trainable).

Sizes follow from a few numbers (paper values in brackets):

* ground input ``H x W`` [384 x 768] -> detailed ground map ``H/32 x W/32`` [12 x 24];
* aerial input ``L x L`` [384] -> decoder levels 0..3 of ``L/32, L/16, L/8, L/4`` cells
  [12, 24, 48, 96] with ``dims[3], dims[2], dims[1], dims[0]`` channels [768, 384, 192, 96];
  D covers ``L x L`` aerial pixels;
* the detailed ground descriptor f_g^l has as many dimensions as level l has channels:
  ``c_l`` per panorama column times ``W/32`` columns [32, 16, 8, 4 x 24];
* the global descriptor has ``dims[3]`` dimensions [768].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class ModelConfig:
    name: str
    ground_size: tuple[int, int]          # (H, W) of the ground panorama input
    aerial_size: int                      # L: aerial tile input, and D's side
    dims: tuple[int, int, int, int]       # ConvNeXt widths of stages 1-4
    depths: tuple[int, int, int]          # ConvNeXt blocks in stages 1-3
    head_blocks: int = 1                  # ConvNeXt blocks kept in each stage-4 head (paper: 1)
    attention_reduction: int = 2          # aggregator halves Q, K, V (paper)
    gem_p: float = 3.0                    # initial GeM power (learnable)
    layout_channels: int = 0              # beyond the paper: layout term of the global descriptor (0: off)
    decoder_hidden: int = 8               # channels before D's final 3x3 conv
    yaw_head: bool = True                 # beyond the paper: (cos, sin) orientation field
    yaw_hidden: int = 32
    heading_subdivisions: int = 1         # R: sub-stride rotations of the panorama for unknown heading
    circular_ground_padding: bool = True  # exact roll equivariance of the ground encoder
    # Where the released checkpoints differ from the paper's text (see the ``vigor`` configuration):
    aggregator_qk: str = "pre_norm"       # Q, K = Linear(LN(G)) ("pre_norm", Eq. 2) or ReLU(LN(Linear(G))) ("post_norm_relu")
    global_norm: bool = False             # LayerNorm after GeM, before the L2 normalisation
    temperatures: int = 4                 # learnable InfoNCE temperatures: 4 (G, M, R, heading) or 2 (G, R)
    match_temperature: float = 0.1        # L_M's fixed temperature when ``temperatures`` is 2
    column_major_descriptors: bool = False  # f_g^l flattened column by column (c_l values per column)
    drop_path: float = 0.0
    stride: int = 32                      # total encoder stride (fixed by ConvNeXt)

    def __post_init__(self):
        h, w = self.ground_size
        if h % self.stride or w % self.stride or self.aerial_size % self.stride:
            raise ValueError(f"{self.name}: ground {h}x{w} and aerial {self.aerial_size} must be multiples "
                             f"of the encoder stride {self.stride}")
        cols = w // self.stride
        for level, ch in enumerate(self.level_channels):
            if ch % cols:
                raise ValueError(f"{self.name}: level {level} has {ch} channels, not divisible by the "
                                 f"{cols} ground feature columns")
        if self.heading_subdivisions < 1 or self.stride % self.heading_subdivisions:
            raise ValueError(f"{self.name}: heading_subdivisions must divide the stride {self.stride}")
        if self.aggregator_qk not in ("pre_norm", "post_norm_relu"):
            raise ValueError(f"{self.name}: aggregator_qk must be 'pre_norm' or 'post_norm_relu', "
                             f"got {self.aggregator_qk!r}")
        if self.temperatures not in (2, 4):
            raise ValueError(f"{self.name}: temperatures must be 2 or 4, got {self.temperatures}")
        if self.temperatures == 2 and self.yaw_head:
            raise ValueError(f"{self.name}: the yaw head needs its own temperature (temperatures = 4)")

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def descriptor_dim(self) -> int:
        return self.dims[3]

    @property
    def ground_feature_size(self) -> tuple[int, int]:
        return self.ground_size[0] // self.stride, self.ground_size[1] // self.stride

    @property
    def ground_columns(self) -> int:
        return self.ground_feature_size[1]

    @property
    def level_channels(self) -> tuple[int, int, int, int]:
        return self.dims[3], self.dims[2], self.dims[1], self.dims[0]

    @property
    def level_cells(self) -> tuple[int, int, int, int]:
        base = self.aerial_size // self.stride
        return base, 2 * base, 4 * base, 8 * base

    @property
    def column_channels(self) -> tuple[int, int, int, int]:
        """c_l: channels per panorama column of the detailed ground descriptor f_g^l."""
        return tuple(ch // self.ground_columns for ch in self.level_channels)  # type: ignore[return-value]

    @property
    def heading_bins(self) -> int:
        """K: orientation bins searched in unknown-heading mode (columns x subdivisions)."""
        return self.ground_columns * self.heading_subdivisions

    @property
    def heading_bin_deg(self) -> float:
        return 360.0 / self.heading_bins

    def with_(self, **changes) -> "ModelConfig":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)


PAPER = ModelConfig(
    name="paper",
    ground_size=(384, 768),
    aerial_size=384,
    dims=(96, 192, 384, 768),      # ConvNeXt-Tiny
    depths=(3, 3, 9),
    heading_subdivisions=2,        # 48 bins of 7.5 deg
)

# The network of the authors' released VIGOR checkpoints (github.com/chord-sz/UnifyGeo):
# ``state_dict`` for ``state_dict`` the same tensors, under other names (model/released.py maps
# them). It differs from ``paper`` where their code differs from the paper's text, and has
# none of our extensions.
VIGOR = PAPER.with_(
    name="vigor",
    yaw_head=False,
    layout_channels=0,
    circular_ground_padding=False,
    aggregator_qk="post_norm_relu",
    global_norm=True,
    temperatures=2,
    column_major_descriptors=True,
)

SMALL = ModelConfig(
    name="small",
    ground_size=(128, 256),
    aerial_size=128,
    dims=(32, 64, 128, 192),      # 3.9 M parameters: 7.8 MB in fp16, shipped with the package
    depths=(2, 2, 4),
    yaw_hidden=16,
    heading_subdivisions=4,        # 32 bins of 11.25 deg
    layout_channels=32,            # global descriptors that keep the azimuth / map layout
)

CONFIGS = {c.name: c for c in (PAPER, VIGOR, SMALL)}


def get_config(name_or_config: str | ModelConfig | dict) -> ModelConfig:
    """A configuration by name (``paper``, ``vigor``, ``small``), or rebuilt from ``as_dict()``."""
    if isinstance(name_or_config, ModelConfig):
        return name_or_config
    if isinstance(name_or_config, dict):
        d = dict(name_or_config)
        for key in ("ground_size", "dims", "depths"):
            d[key] = tuple(d[key])
        return ModelConfig(**d)
    try:
        return CONFIGS[name_or_config]
    except KeyError:
        raise ValueError(f"unknown model configuration {name_or_config!r}; expected one of "
                         f"{sorted(CONFIGS)}") from None


SHIPPED_MODEL = Path(__file__).resolve().parent / "weights" / "small.pt"
#: The models shipped in the package, by name (``--weights NAME``; see weights/MODEL_CARD.md):
#: ``small`` for panorama cameras (the default) and ``small-fov``, the same network after the
#: limited-field-of-view stage, for pinhole cameras and camera rigs. A database is built with
#: the model of the vehicle's camera kind.
SHIPPED_MODELS = {"small": SHIPPED_MODEL, "small-fov": SHIPPED_MODEL.parent / "small_fov.pt"}


def shipped_model_path(name: str = "small") -> Path:
    """A trained model that ships inside the package (see weights/MODEL_CARD.md)."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"shipped model: expected one of {', '.join(SHIPPED_MODELS)}, got {name!r}")
    path = SHIPPED_MODELS[name]
    if not path.is_file():
        raise FileNotFoundError(f"the shipped model is missing: expected {path} (reinstall the package)")
    return path
