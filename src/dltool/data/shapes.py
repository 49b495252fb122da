"""Generated images of circles, squares and triangles (``source: shapes``): a CNN exercise.

Each image is ``image_size`` x ``image_size`` pixels: one bright shape on a dark
background, drawn with NumPy from a signed distance (so edges are anti-aliased)
then covered in gaussian pixel noise. Per image, at random:

- size: the shape fits in a circle of radius 25%..45% of the side (a square is
  inscribed in that circle, a triangle is equilateral with that circumradius);
- position: anywhere the whole shape stays inside the image;
- rotation: any angle for squares and triangles;
- brightness: shape 55%..100% of 255, background 0%..20% of 255;
- ``color_mode: rgb``: a random shape colour (its brightest channel at the brightness
  above) on a grey background;
- noise: normal(0, ``noise * 255``) added to every pixel and channel, then clipped.

Classes are ``config.shapes`` in that order (label i = ``shapes[i]``), balanced in
both splits (counts differ by at most one). Everything comes from one
``numpy.random.Generator`` seeded with ``seed``: the same seed gives the same pixels.
Pixels are float32 in 0..255 with shape (n, side, side, channels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from dltool.data import Dataset
from dltool.data.source import CHANNELS, ColorMode, DataSource
from dltool.errors import DataError
from dltool.schema import Int

if TYPE_CHECKING:
    import numpy as np

CHUNK_PIXELS = 4_000_000  # images drawn per step x pixels per image: bounds temporary memory
SIZE_RANGE = (0.25, 0.45)  # radius of the circle the shape fits in, as a fraction of the side
SHAPE_BRIGHTNESS = (0.55, 1.0)  # fraction of 255
BACKGROUND_BRIGHTNESS = (0.0, 0.2)  # fraction of 255: dark


def _signed_distance(
    kind: str, dx: np.ndarray, dy: np.ndarray, radius: np.ndarray, angle: np.ndarray
) -> np.ndarray:
    """Distance in pixels from the shape's outline: negative inside, positive outside.

    ``dx``, ``dy`` are pixel offsets from each shape's centre (n, side, side);
    ``radius`` and ``angle`` are per image, shaped (n, 1, 1).
    """
    import numpy as np

    if kind == "circle":
        return np.sqrt(dx**2 + dy**2) - radius
    cos, sin = np.cos(angle), np.sin(angle)
    if kind == "square":  # inscribed in the circle: half side = radius / sqrt(2)
        u, v = cos * dx + sin * dy, cos * dy - sin * dx
        return np.maximum(np.abs(u), np.abs(v)) - radius / np.sqrt(2.0)
    # equilateral triangle: inside all three edges, each at the inradius (radius / 2)
    distance = np.full(dx.shape, -np.inf, dtype=dx.dtype)
    for corner in range(3):
        normal = angle + corner * (2.0 * np.pi / 3.0)
        distance = np.maximum(distance, np.cos(normal) * dx + np.sin(normal) * dy)
    return distance - radius / 2.0


def draw(
    kinds: list[str],
    labels: np.ndarray,
    side: int,
    channels: int,
    noise: float,
    generator: np.random.Generator,
) -> np.ndarray:
    """Images of ``kinds[label]`` for each label: float32 (n, side, side, channels) in 0..255."""
    import numpy as np

    n = len(labels)
    # Every random number is drawn up front, in a fixed order, so chunking cannot change them.
    radius = generator.uniform(*SIZE_RANGE, size=n) * side
    centre_x = generator.uniform(radius, side - radius)
    centre_y = generator.uniform(radius, side - radius)
    angle = generator.uniform(0.0, 2.0 * np.pi, size=n)
    brightness = generator.uniform(*SHAPE_BRIGHTNESS, size=n) * 255.0
    background = generator.uniform(*BACKGROUND_BRIGHTNESS, size=n) * 255.0
    if channels == 1:
        colour = np.ones((n, 1))
    else:  # a random hue: the brightest channel is 1
        colour = generator.uniform(0.0, 1.0, size=(n, channels))
        colour /= colour.max(axis=1, keepdims=True)

    images = np.empty((n, side, side, channels), dtype="float32")
    grid = np.arange(side, dtype="float32") + 0.5  # pixel centres
    step = max(1, CHUNK_PIXELS // (side * side))
    for start in range(0, n, step):
        part = slice(start, min(n, start + step))
        dx = grid[None, None, :] - centre_x[part, None, None].astype("float32")
        dy = grid[None, :, None] - centre_y[part, None, None].astype("float32")
        distance = np.empty((dx.shape[0], side, side), dtype="float32")
        for index, kind in enumerate(kinds):
            mine = np.flatnonzero(labels[part] == index)
            if mine.size:
                distance[mine] = _signed_distance(
                    kind,
                    np.broadcast_to(dx[mine], (mine.size, side, side)),
                    np.broadcast_to(dy[mine], (mine.size, side, side)),
                    radius[part][mine, None, None].astype("float32"),
                    angle[part][mine, None, None].astype("float32"),
                )
        coverage = np.clip(0.5 - distance, 0.0, 1.0)[..., None]  # anti-aliased edge: 1 px
        shape_value = (brightness[part, None] * colour[part])[:, None, None, :]
        back = background[part, None, None, None]
        images[part] = back + coverage * (shape_value - back)
    if noise > 0:
        # Drawn in chunks too (standard_normal fills float32 in place: no float64 copy).
        for start in range(0, n, step):
            block = images[start : start + step]
            block += generator.standard_normal(block.shape, dtype=np.float32) * np.float32(
                noise * 255.0
            )
    np.clip(images, 0.0, 255.0, out=images)
    return images


def balanced_labels(n: int, classes: int, generator: np.random.Generator) -> np.ndarray:
    """``n`` class indices in random order, each class ``n // classes`` or one more times."""
    import numpy as np

    return generator.permutation(np.arange(n) % classes).astype("int64")


class ShapesData(DataSource):
    """Generated images of circles, squares and triangles: a CNN exercise that runs anywhere."""

    source: Literal["shapes"]
    n_train: Int = Field(1200, ge=2, le=1_000_000)
    n_test: Int = Field(300, ge=1, le=1_000_000)
    image_size: Int = Field(32, ge=8, le=256, description="square images, pixels per side")
    shapes: list[Literal["circle", "square", "triangle"]] = Field(
        ["circle", "square", "triangle"], min_length=2, description="the classes, in label order"
    )
    noise: float = Field(0.1, ge=0.0, le=1.0, description="pixel noise, as a fraction of 255")
    color_mode: ColorMode = "grayscale"

    @field_validator("shapes")
    @classmethod
    def _unique_shapes(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"each shape once (received {value})")
        return value

    def input_shape(self) -> list[int] | None:
        return [self.image_size, self.image_size, CHANNELS[self.color_mode]]

    def class_count(self) -> int | None:
        return len(self.shapes)

    def load(self, seed: int, task: str) -> Dataset:
        """The generated training and test images of a ``shapes`` data self.

        Raises:
            DataError: ``binary_crossentropy`` with other than 2 shapes.
        """
        import numpy as np

        kinds: list[str] = list(self.shapes)
        if task == "binary" and len(kinds) != 2:
            raise DataError(
                f"data.shapes: binary_crossentropy needs exactly 2 classes, received {len(kinds)} "
                f"({', '.join(kinds)}); expected 2 shapes, or loss: sparse_categorical_crossentropy"
            )
        channels = CHANNELS[self.color_mode]
        generator = np.random.default_rng(seed)
        splits = []
        for n in (self.n_train, self.n_test):
            labels = balanced_labels(n, len(kinds), generator)
            images = draw(kinds, labels, self.image_size, channels, self.noise, generator)
            splits.append((images, labels))
        (x_train, y_train), (x_test, y_test) = splits
        return Dataset(
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            class_names=kinds,
            notes={
                "origin": "generated (dltool.data.shapes)",
                "image_size": self.image_size,
                "color_mode": self.color_mode,
                "noise": self.noise,
            },
        )
