"""Predictors for the Cog system tests (tests/it/cog.rs), run by the real Cog server:

    COG_PREDICT_TYPE_STUB=predict.py:<Class> python -m cog.server.http

Every class takes the same inputs, so the one schema in .cog/openapi_schema.json (made
with Cog's own inspector, see tests/cog/README.md) describes them all. Each writes what
it does to $PREDICTION_LOG (a directory the test owns): `<name>.start`, `<name>.end`,
`<name>.canceled`, and the image it returned as `<name>.png` (a name unique per
prediction), so a test can check what the
server really did.
"""

import asyncio
import os
import tempfile
import time

from cog import BasePredictor, Input, Path
from PIL import Image, ImageFilter, ImageOps


def _name():
    """Unique per prediction: the server runs them in one worker process."""
    return f"{time.time_ns()}-{os.getpid()}"


def _mark(name, what):
    folder = os.environ.get("PREDICTION_LOG")
    if folder:
        with open(os.path.join(folder, f"{name}.{what}"), "w") as f:
            f.write(f"{time.time()}\n")


def _portrait(image, style, name):
    picture = ImageOps.exif_transpose(Image.open(image)).convert("RGB")
    picture = ImageOps.posterize(picture.filter(ImageFilter.SMOOTH_MORE), 3)
    if style == "pencil_sketch":
        picture = ImageOps.grayscale(picture.filter(ImageFilter.CONTOUR)).convert("RGB")
    out = Path(tempfile.mkdtemp()) / "portrait.png"
    picture.save(out)
    folder = os.environ.get("PREDICTION_LOG")
    if folder:
        picture.save(os.path.join(folder, f"{name}.png"))
    return out


class Portrait(BasePredictor):
    """A Pillow filter: the portrait is the posterized, smoothed photo."""

    def predict(
        self,
        image: Path = Input(description="the pet photo"),
        style: str = Input(default="watercolor"),
        hold_ms: int = Input(default=0, ge=0, le=60000),
    ) -> Path:
        name = _name()
        _mark(name, "start")
        time.sleep(hold_ms / 1000)
        out = _portrait(image, style, name)
        _mark(name, "end")
        return out


class ConcurrentPortrait(BasePredictor):
    """The same filter with an async predict, which COG_MAX_CONCURRENCY > 1 needs."""

    async def predict(
        self,
        image: Path = Input(description="the pet photo"),
        style: str = Input(default="watercolor"),
        hold_ms: int = Input(default=0, ge=0, le=60000),
    ) -> Path:
        name = _name()
        _mark(name, "start")
        await asyncio.sleep(hold_ms / 1000)
        out = _portrait(image, style, name)
        _mark(name, "end")
        return out


class Sleeper(BasePredictor):
    """Runs until canceled (at most a minute, whatever hold_ms says), in short sleeps
    Cog can interrupt."""

    def predict(
        self,
        image: Path = Input(description="the pet photo"),
        style: str = Input(default="watercolor"),
        hold_ms: int = Input(default=0, ge=0, le=60000),
    ) -> Path:
        name = _name()
        _mark(name, "start")
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                time.sleep(0.05)
        except BaseException:
            _mark(name, "canceled")
            raise
        _mark(name, "end")
        return _portrait(image, style, name)


class Failing(BasePredictor):
    """Raises, as a model that cannot handle the input does."""

    def predict(
        self,
        image: Path = Input(description="the pet photo"),
        style: str = Input(default="watercolor"),
        hold_ms: int = Input(default=0, ge=0, le=60000),
    ) -> Path:
        _mark(_name(), "start")
        raise ValueError("no pet found in the photo")


class BrokenSetup(BasePredictor):
    """Fails in setup(), as a model whose weights cannot be loaded does."""

    def setup(self):
        raise RuntimeError("the weights file is missing")

    def predict(
        self,
        image: Path = Input(description="the pet photo"),
        style: str = Input(default="watercolor"),
        hold_ms: int = Input(default=0, ge=0, le=60000),
    ) -> Path:
        raise AssertionError("never reached")
