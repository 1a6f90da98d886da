"""One job's parsed parameters (`GenerationRequest`): the prompt that reproduces it, and its stored form."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field

from comfy._prompt_text import escape_permutations, number_text, parse_permutations

SEED_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One job's parameters, validated and resolved against the model profile."""

    text: str  # the prompt text of this permutation, parameters removed, as typed (for display)
    positive: str  # CLIPTextEncode text: style prefix/suffix and multi-prompt weights applied
    negative: str  # model negative, style negative, --no items, negative-weight parts; ", " joined
    model: str
    checkpoint: str
    width: int
    height: int
    seed: int
    steps: int  # after --quality
    cfg: float  # after --stylize and --chaos, unless --cfg was given
    sampler: str
    scheduler: str
    batch_size: int = 4
    denoise: float = 1.0  # below 1 only for image prompts (from --iw)
    chaos: int = 0
    stylize: int = 100
    quality: float = 1.0
    aspect: tuple[int, int] | None = None  # reduced, e.g. (16, 9)
    style: str | None = None
    no: tuple[str, ...] = ()
    tile: bool = False
    image_weight: float | None = None
    zoom: float | None = None  # a Custom Zoom's `--zoom`: how much the canvas grows around the picture
    # Flags the user typed (canonical names such as "ar", "seed"), so re-formatting is faithful. It records
    # how the request was written, not what is generated, so it takes no part in equality.
    explicit: frozenset[str] = field(default=frozenset(), compare=False)
    variation_strength: float = 0.0  # chaos / 100, for templates that bind it


def with_new_seed(req: GenerationRequest, rng: random.Random) -> GenerationRequest:
    """The same request with a fresh random seed (for reroll); the seed no longer counts as typed."""
    return dataclasses.replace(req, seed=rng.randint(0, SEED_MAX), explicit=req.explicit - {"seed"})


def format_request(req: GenerationRequest) -> str:
    """The prompt that reproduces `req`: its text, the parameters the user typed, and always its seed.

    `parse_prompt(format_request(req), ctx)` gives `[req]` again with the same context. Braces and
    backslash-commas are escaped only when the plain text would be read as a permutation.
    """
    explicit = req.explicit
    flags: list[str] = []
    if "model" in explicit:
        flags.append(f"--model {req.model}")
    if req.style is not None:
        flags.append(f"--style {req.style}")
    if req.aspect is not None:
        flags.append(f"--ar {req.aspect[0]}:{req.aspect[1]}")
    if "chaos" in explicit:
        flags.append(f"--chaos {req.chaos}")
    if "stylize" in explicit:
        flags.append(f"--stylize {req.stylize}")
    if "quality" in explicit:
        flags.append(f"--quality {number_text(req.quality)}")
    if "steps" in explicit:
        flags.append(f"--steps {req.steps}")
    if "cfg" in explicit:
        flags.append(f"--cfg {number_text(req.cfg)}")
    if "sampler" in explicit:
        flags.append(f"--sampler {req.sampler}")
    if "scheduler" in explicit:
        flags.append(f"--scheduler {req.scheduler}")
    if req.tile:
        flags.append("--tile")
    if "iw" in explicit and req.image_weight is not None:
        flags.append(f"--iw {number_text(req.image_weight)}")
    if req.no:
        flags.append("--no " + ", ".join(req.no))
    flags.append(f"--seed {req.seed}")
    if req.zoom is not None:
        flags.append(f"--zoom {number_text(req.zoom)}")
    prompt = " ".join(part for part in (req.text, *flags) if part)  # a blend has no text
    plain = parse_permutations(prompt)
    if plain.count == 1 and plain.expand() == [prompt]:
        return prompt
    return escape_permutations(prompt)


def request_to_json(req: GenerationRequest) -> str:
    """Serialize a request for storage (the job's `request_json`)."""
    data = dataclasses.asdict(req)
    data["explicit"] = sorted(req.explicit)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def request_from_json(text: str) -> GenerationRequest:
    """Rebuild a request stored by `request_to_json`; unknown keys (from newer versions) are ignored."""
    data = json.loads(text)
    names = {f.name for f in dataclasses.fields(GenerationRequest)}
    values = {key: value for key, value in data.items() if key in names}
    values["explicit"] = frozenset(values.get("explicit", ()))
    values["no"] = tuple(values.get("no", ()))
    if values.get("aspect") is not None:
        values["aspect"] = tuple(values["aspect"])
    return GenerationRequest(**values)
