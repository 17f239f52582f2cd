"""A synthetic single-call tool-use task small enough for one CPU, for the TL-Training study.

Eight tools; their canonical names share prefixes, so that a call is often decided by the token
where two names part (PKT's key tokens):
  get_weather(city, day, unit=None)   get_weekday(date)   get_week_number(date)
  get_time(city)   get_timezone(city)   (get_time is a prefix of get_timezone)
  search_flights(origin, dest, date)   search_hotels(city, nights, stars=None)
  search_trains(origin, dest)
An item declares `tools_per_item` of them (the gold one plus distractors drawn `sibling_weight`
times as often from its own group), in random order, one line each:
`name(p1, p2=None): description`. The user's request comes from a template of the gold tool;
the gold call copies the request's values (`nights` and `stars` are JSON integers) and names an
optional parameter only when the request mentions it. Calls are written with `format_call`.

Names are drawn per item, so a model has to copy them from the declarations: every tool that
canonically starts with `get` gets one prefix and every `search` tool another (two distinct
words of PREFIXES, so look-alike names keep their shared prefix), the suffix after the first
`_` stays (it names the tool's function), and each parameter gets a word of its synonym pool
(PARAM_NAMES). Canonical names are one of these draws. A share `name_noise_share` of training
items is also misspelled (below). With `vocabulary()` as a `WordTokenizer`'s list, every drawn
name is whole word tokens and a misspelled one is spelled in bytes.

Training trajectories are System, User, Assistant (the call), Output (a JSON result). A share
`adverse_share` of them is adverse: the assistant first makes a wrong call (a declared sibling
tool, a missing required argument or a made-up parameter name), the tool answers with an error
message that `is_error_output` recognizes, and the right call follows.

Test items are System, User, Assistant (the gold call), at four levels (two of them RoTBench's):
  clean       the canonical names.
  renamed     drawn names as in training, with prefixes and parameter names never canonical.
  misspelled  canonical names with one letter inserted, deleted or replaced in every tool and
              parameter name (RoTBench's slight noise).
  swapped     the declared tools exchange their canonical names, and the parameter names of
              the item are permuted among its parameters (RoTBench's heavy noise): names
              mislead, only the descriptions tell the tools apart.
Descriptions and parameter order never change, so the gold call is always determined by the
request and the declarations: `solve` reads both and returns the gold call on every item of
every level (tested). Two shallow rules bound what shortcuts get (`rule_scores`; TS = PI = CF for
both, as their arguments are right whenever the tool is; measured on 2,000 items per level,
default_rng([0, i]) for the i-th level, 4 tools per item):
  name rule       the declared tool whose name ends with the gold tool's canonical suffix
                  (matching the request to names, ignoring descriptions), with the gold values
                  under its declared parameter names: clean 100, renamed 100, misspelled 48.45,
                  swapped 0.
  canonical rule  the gold call with the canonical names (what a model that memorized the eight
                  tools writes): clean 100, 0 at every other level.
So clean and renamed measure selection among look-alike names and copying them, misspelled
measures names spelled outside the vocabulary, and swapped whether descriptions are read.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import string
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from jaxlab.data.tool_calls import Call, format_call, parse_call
from jaxlab.data.tool_use import ROLES, Message, Trajectory, render

LEVELS = ("clean", "renamed", "misspelled", "swapped")
CITIES = (
  "Oslo",
  "Rome",
  "Paris",
  "Lima",
  "Cairo",
  "Tokyo",
  "Delhi",
  "Seoul",
  "Berlin",
  "Madrid",
  "Vienna",
  "Dublin",
  "Quito",
  "Accra",
  "Hanoi",
  "Riga",
  "Bern",
  "Kyiv",
  "Doha",
  "Baku",
  "Sofia",
  "Lisbon",
  "Prague",
  "Nairobi",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "today")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
UNITS = ("celsius", "fahrenheit")
INT_PARAMS = ("nights", "stars")
# Name prefixes drawn per item: one for the canonical `get` tools, another for `search`.
PREFIXES = ("get", "search", "fetch", "find", "lookup", "query", "check", "show", "load", "list")
# Parameter-name pools, the canonical name first; no word is in two pools.
PARAM_NAMES = {
  "city": ("city", "town", "place"),
  "day": ("day", "when", "period"),
  "unit": ("unit", "scale", "system"),
  "date": ("date", "dated", "calendar"),
  "origin": ("origin", "source", "departure"),
  "dest": ("dest", "destination", "arrival"),
  "nights": ("nights", "stay", "duration"),
  "stars": ("stars", "rating", "grade"),
}
# Made-up parameter names adverse calls use instead of a declared one.
WRONG_KEYS = ("input", "arg", "value", "key")


@dataclasses.dataclass(frozen=True)
class Family:
  """One tool: canonical name and parameters (optional ones last), what the declaration says,
  the prefix its group shares, and request templates ({param} slots)."""

  name: str
  params: tuple[str, ...]
  optional: tuple[str, ...]
  description: str
  group: str
  templates: tuple[str, ...]
  result: Callable[[dict[str, Any], np.random.Generator], str]

  @property
  def required(self) -> tuple[str, ...]:
    return tuple(p for p in self.params if p not in self.optional)

  @property
  def prefix(self) -> str:
    return self.name.split("_", 1)[0]

  @property
  def suffix(self) -> str:
    return self.name.split("_", 1)[1]


def _weather(args, rng):
  return f'{{"temperature": {int(rng.integers(-5, 35))}, "sky": "{rng.choice(["sunny", "rain"])}"}}'


FAMILIES = (
  Family(
    "get_weather",
    ("city", "day", "unit"),
    ("unit",),
    "weather forecast",
    "get_we",
    (
      "What is the weather in {city} on {day}?",
      "Weather for {city}, {day}, please.",
      "What is the weather in {city} on {day} in {unit}?",
    ),
    _weather,
  ),
  Family(
    "get_weekday",
    ("date",),
    (),
    "weekday of a date",
    "get_we",
    ("Which day of the week is {date}?", "What weekday falls on {date}?"),
    lambda args, rng: f'{{"weekday": "{DAYS[int(rng.integers(0, 7))]}"}}',
  ),
  Family(
    "get_week_number",
    ("date",),
    (),
    "week number of a date",
    "get_we",
    ("Which week number is {date}?", "In what week of the year is {date}?"),
    lambda args, rng: f'{{"week": {int(rng.integers(1, 53))}}}',
  ),
  Family(
    "get_time",
    ("city",),
    (),
    "local time",
    "get_time",
    ("What time is it in {city}?", "Tell me the local time in {city}."),
    lambda args, rng: (
      f'{{"time": "{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"}}'
    ),
  ),
  Family(
    "get_timezone",
    ("city",),
    (),
    "time zone",
    "get_time",
    ("Which time zone is {city} in?", "What is the time zone of {city}?"),
    lambda args, rng: f'{{"zone": "UTC+{int(rng.integers(0, 12))}"}}',
  ),
  Family(
    "search_flights",
    ("origin", "dest", "date"),
    (),
    "flight search",
    "search_",
    (
      "Find a flight from {origin} to {dest} on {date}.",
      "I need to fly from {origin} to {dest} on {date}.",
    ),
    lambda args, rng: (
      f'{{"flights": [{{"id": "XY{int(rng.integers(100, 999))}", "price": '
      f"{int(rng.integers(50, 900))}}}]}}"
    ),
  ),
  Family(
    "search_hotels",
    ("city", "nights", "stars"),
    ("stars",),
    "hotel search",
    "search_",
    (
      "Find a hotel in {city} for {nights} nights.",
      "Book me a room in {city} for {nights} nights.",
      "Find a {stars}-star hotel in {city} for {nights} nights.",
    ),
    lambda args, rng: (
      f'{{"hotels": [{{"name": "Hotel {args["city"]}", "price": {int(rng.integers(40, 400))}}}]}}'
    ),
  ),
  Family(
    "search_trains",
    ("origin", "dest"),
    (),
    "train search",
    "search_",
    ("Find a train from {origin} to {dest}.", "Is there a train from {origin} to {dest}?"),
    lambda args, rng: (
      f'{{"trains": [{{"id": "IC{int(rng.integers(10, 99))}", "departs": '
      f'"{int(rng.integers(5, 23)):02d}:15"}}]}}'
    ),
  ),
)
FAMILY_BY_NAME = {f.name: f for f in FAMILIES}
FAMILY_BY_DESCRIPTION = {f.description: f for f in FAMILIES}
SYSTEM_HEADER = "Tools:"


@dataclasses.dataclass(frozen=True)
class Declared:
  """A tool as one item declares it: its (possibly noisy) names, in the family's order."""

  family: Family
  name: str
  params: tuple[str, ...]

  def line(self) -> str:
    params = ", ".join(
      f"{name}=None" if canonical in self.family.optional else name
      for name, canonical in zip(self.params, self.family.params)
    )
    return f"{self.name}({params}): {self.family.description}"

  def call(self, canonical_args: dict[str, Any]) -> str:
    """The call of this tool with arguments given under canonical parameter names."""
    names = dict(zip(self.family.params, self.params))
    return format_call(
      Call(
        self.name, {names[p]: canonical_args[p] for p in self.family.params if p in canonical_args}
      )
    )


def _value(param: str, rng: np.random.Generator, taken: dict[str, Any]) -> Any:
  if param in ("city", "origin", "dest"):
    choices = [c for c in CITIES if c not in taken.values()]
    return choices[int(rng.integers(len(choices)))]
  if param == "day":
    return DAYS[int(rng.integers(len(DAYS)))]
  if param == "date":
    return f"{MONTHS[int(rng.integers(12))]} {int(rng.integers(1, 29))}"
  if param == "unit":
    return UNITS[int(rng.integers(len(UNITS)))]
  if param == "nights":
    return int(rng.integers(1, 10))
  if param == "stars":
    return int(rng.integers(3, 6))
  raise ValueError(f"no values for parameter {param!r}")


def _template_params(template: str) -> tuple[str, ...]:
  return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)


def _request(family: Family, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
  template = family.templates[int(rng.integers(len(family.templates)))]
  args: dict[str, Any] = {}
  for param in family.params:
    if param in _template_params(template):
      args[param] = _value(param, rng, args)
  return template.format(**args), args


# ---------------------------------------------------------------------------------- names


def _letters(rng: np.random.Generator, n: int) -> str:
  return "".join(string.ascii_lowercase[int(i)] for i in rng.integers(0, 26, n))


def misspell(name: str, rng: np.random.Generator) -> str:
  """One letter inserted, deleted or replaced (never the first character, which stays a letter,
  and never a deletion that leaves fewer than three characters)."""
  while True:
    kind = int(rng.integers(3))
    if kind == 1 and len(name) <= 3:
      continue
    at = int(rng.integers(1, len(name) + (kind == 0)))
    if kind == 0:
      edited = name[:at] + _letters(rng, 1) + name[at:]
    elif kind == 1:
      edited = name[:at] + name[at + 1 :]
    else:
      edited = name[:at] + _letters(rng, 1) + name[at + 1 :]
    if edited != name:
      return edited


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
  """A permutation with no fixed point (the identity for n < 2)."""
  if n < 2:
    return np.arange(n)
  while True:
    order = rng.permutation(n)
    if np.all(order != np.arange(n)):
      return order


def _unique(names: Sequence[str]) -> bool:
  return len(set(names)) == len(names)


def _draw(pool: Sequence[str], rng: np.random.Generator) -> str:
  return pool[int(rng.integers(len(pool)))]


def _drawn_names(
  families: Sequence[Family], rng: np.random.Generator, canonical: bool
) -> list[Declared]:
  """Declarations with a drawn prefix per canonical prefix and drawn parameter names; with
  `canonical=False` no drawn word is the canonical one."""
  skip = 0 if canonical else 1
  prefixes = rng.permutation([p for p in PREFIXES if canonical or p not in ("get", "search")])
  chosen = {"get": str(prefixes[0]), "search": str(prefixes[1])}
  return [
    Declared(
      f,
      f"{chosen[f.prefix]}_{f.suffix}",
      tuple(_draw(PARAM_NAMES[p][skip:], rng) for p in f.params),
    )
    for f in families
  ]


def _misspelled(declared: Sequence[Declared], rng: np.random.Generator) -> list[Declared]:
  """Every tool and parameter name with one letter edited; tool names stay distinct and so do
  the parameter names of each tool."""
  while True:
    edited = [
      Declared(d.family, misspell(d.name, rng), tuple(misspell(p, rng) for p in d.params))
      for d in declared
    ]
    if _unique([d.name for d in edited]) and all(_unique(d.params) for d in edited):
      return edited


def _renamed(families: Sequence[Family], level: str, rng: np.random.Generator) -> list[Declared]:
  """The declarations of `families` named as `level` says (see the module docstring)."""
  canonical = [Declared(f, f.name, f.params) for f in families]
  if level == "clean":
    return canonical
  if level == "renamed":
    return _drawn_names(families, rng, canonical=False)
  if level == "misspelled":
    return _misspelled(canonical, rng)
  names = [d.name for d in canonical]
  order = _derangement(len(names), rng)
  params = sorted({p for d in canonical for p in d.params})
  renaming = dict(zip(params, [params[i] for i in _derangement(len(params), rng)]))
  return [
    Declared(d.family, names[order[i]], tuple(renaming[p] for p in d.params))
    for i, d in enumerate(canonical)
  ]


# ---------------------------------------------------------------------------------- items


@dataclasses.dataclass(frozen=True)
class ToolTask:
  """The generator; every draw comes from the `rng` a method is given."""

  tools_per_item: int = 4
  adverse_share: float = 0.25
  name_noise_share: float = 0.25
  sibling_weight: float = 3.0

  def validate(self) -> None:
    """Raises ValueError (one line) for settings out of range."""
    if not 1 <= self.tools_per_item <= len(FAMILIES):
      raise ValueError(
        f"task.tools_per_item must be in 1..{len(FAMILIES)}, got {self.tools_per_item}"
      )
    for name in ("adverse_share", "name_noise_share"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"task.{name} must be in [0, 1], got {getattr(self, name)}")
    if self.sibling_weight <= 0:
      raise ValueError(f"task.sibling_weight must be positive, got {self.sibling_weight}")

  def _families(self, gold: Family, rng: np.random.Generator) -> list[Family]:
    others = [f for f in FAMILIES if f is not gold]
    weights = np.array([self.sibling_weight if f.group == gold.group else 1.0 for f in others])
    picked = rng.choice(
      len(others), self.tools_per_item - 1, replace=False, p=weights / weights.sum()
    )
    families = [gold] + [others[int(i)] for i in picked]
    return [families[int(i)] for i in rng.permutation(len(families))]

  def _item(self, level: str, rng: np.random.Generator):
    gold = FAMILIES[int(rng.integers(len(FAMILIES)))]
    families = self._families(gold, rng)
    if level == "train":
      declared = _drawn_names(families, rng, canonical=True)
      if rng.random() < self.name_noise_share:
        declared = _misspelled(declared, rng)
    else:
      declared = _renamed(families, level, rng)
    request, args = _request(gold, rng)
    system = "\n".join([SYSTEM_HEADER, *(d.line() for d in declared)])
    answer = next(d for d in declared if d.family is gold)
    return declared, answer, system, request, args

  def train_trajectories(self, n: int, rng: np.random.Generator) -> list[Trajectory]:
    """`n` training trajectories (see the module docstring)."""
    trajectories = []
    for i in range(n):
      declared, answer, system, request, args = self._item("train", rng)
      messages = [Message("System", system), Message("User", request)]
      if rng.random() < self.adverse_share:
        wrong, error = _adverse_call(declared, answer, args, rng)
        messages += [Message("Assistant", wrong), Message("Output", error)]
      messages += [
        Message("Assistant", answer.call(args)),
        Message("Output", answer.family.result(args, rng)),
      ]
      trajectories.append(_trajectory(messages, declared, f"train-{i}"))
    return trajectories

  def test_trajectories(
    self, level: str, n: int, rng: np.random.Generator, exclude: Iterable[str] = ()
  ) -> list[Trajectory]:
    """`n` test items at noise `level`: System, User, Assistant (the gold call). Items whose
    prompt (system + request) is in `exclude` (e.g. the training prompts) are drawn again."""
    if level not in LEVELS:
      raise ValueError(f"unknown noise level {level!r}; choose from {', '.join(LEVELS)}")
    exclude, items = set(exclude), []
    while len(items) < n:
      declared, answer, system, request, args = self._item(level, rng)
      if prompt_key(system, request) in exclude:
        continue
      exclude.add(prompt_key(system, request))
      messages = [Message("System", system), Message("User", request)]
      messages.append(Message("Assistant", answer.call(args)))
      items.append(_trajectory(messages, declared, f"{level}-{len(items)}"))
    return items


def prompt_key(system: str, request: str) -> str:
  return system + "\n" + request


def _trajectory(messages: list[Message], declared: Sequence[Declared], id: str) -> Trajectory:
  return Trajectory(tuple(messages), {d.name: d.params for d in declared}, id)


def _adverse_call(
  declared: Sequence[Declared], answer: Declared, args: dict[str, Any], rng: np.random.Generator
) -> tuple[str, str]:
  """A wrong first call and the error the tool answers it with."""
  siblings = [d for d in declared if d is not answer and d.family.group == answer.family.group]
  kinds = ["sibling"] if siblings else []
  if len(answer.family.required) > 1:
    kinds.append("missing")
  kinds.append("made_up")
  kind = kinds[int(rng.integers(len(kinds)))]
  names = dict(zip(answer.family.params, answer.params))
  if kind == "sibling":
    other = siblings[int(rng.integers(len(siblings)))]
    call = Call(other.name, {names[p]: v for p, v in args.items()})
    unknown = next((k for k in call.arguments if k not in other.params), None)
    if unknown is None:
      return format_call(call), "Error: wrong tool"
    return format_call(call), f"Error: unexpected argument '{unknown}'"
  if kind == "missing":
    dropped = answer.family.required[int(rng.integers(len(answer.family.required)))]
    call = Call(answer.name, {names[p]: v for p, v in args.items() if p != dropped})
    return format_call(call), f"Error: missing argument '{names[dropped]}'"
  bad = sorted(args)[int(rng.integers(len(args)))]
  wrong_key = _draw(WRONG_KEYS, rng)
  call = Call(answer.name, {(wrong_key if p == bad else names[p]): v for p, v in args.items()})
  return format_call(call), f"Error: unexpected argument '{wrong_key}'"


def trajectory_record(trajectory: Trajectory) -> dict[str, Any]:
  """The jaxlab JSONL record of a trajectory (what `read_jsonl` and the scorer read)."""
  return {
    "id": trajectory.id,
    "tools": {name: list(params) for name, params in trajectory.tools.items()},
    "messages": [{"role": m.role, "content": m.content} for m in trajectory.messages],
  }


@functools.cache
def vocabulary() -> tuple[str, ...]:
  """Every word of the task's canonical text, sorted: the word list of a `WordTokenizer`, so
  canonical names, values and results are whole tokens while noisy names spell out in bytes.
  Drawn from the tables and from 400 adverse, noise-free trajectories (every error message and
  result shape), with a fixed seed."""
  texts = [SYSTEM_HEADER, *ROLES, "None", *CITIES, *DAYS, *MONTHS, *UNITS, *PREFIXES, *WRONG_KEYS]
  texts += [name for pool in PARAM_NAMES.values() for name in pool]
  for family in FAMILIES:
    texts += [family.name, family.description, *family.templates]
  task = ToolTask(tools_per_item=len(FAMILIES), adverse_share=1.0, name_noise_share=0.0)
  texts += [render(t.messages) for t in task.train_trajectories(400, np.random.default_rng(0))]
  return tuple(sorted({word for text in texts for word in re.findall("[A-Za-z]+", text)}))


# ---------------------------------------------------------------------------------- rules

_DECLARATION = re.compile(r"^(?P<name>\w+)\((?P<params>[^)]*)\): (?P<description>.+)$")
_SLOT = {"nights": r"\d+", "stars": r"\d+", "unit": "|".join(UNITS)}


def _template_regex(template: str) -> re.Pattern[str]:
  parts, pattern = string.Formatter().parse(template), ""
  for literal, name, _, _ in parts:
    pattern += re.escape(literal)
    if name:
      pattern += f"(?P<{name}>{_SLOT.get(name, r'[A-Z][A-Za-z]*(?: [0-9]+)?|today')})"
  return re.compile(pattern)


_TEMPLATES = [(f, _template_regex(t)) for f in FAMILIES for t in f.templates]


def parse_request(request: str) -> tuple[Family, dict[str, Any]]:
  """The family and canonical arguments a request names; raises ValueError unless exactly one
  template matches it."""
  matches = [(f, m) for f, regex in _TEMPLATES if (m := regex.fullmatch(request))]
  if len(matches) != 1:
    raise ValueError(f"{len(matches)} templates match {request!r}")
  family, match = matches[0]
  args = {k: int(v) if k in INT_PARAMS else v for k, v in match.groupdict().items()}
  return family, args


def parse_declarations(system: str) -> list[Declared]:
  """The declared tools of a system prompt, in order."""
  lines = system.split("\n")
  if lines[0] != SYSTEM_HEADER:
    raise ValueError("not a tool-task system prompt")
  declared = []
  for line in lines[1:]:
    match = _DECLARATION.fullmatch(line)
    if match is None:
      raise ValueError(f"not a declaration: {line!r}")
    params = tuple(p.strip().removesuffix("=None") for p in match["params"].split(",") if p.strip())
    declared.append(Declared(FAMILY_BY_DESCRIPTION[match["description"]], match["name"], params))
  return declared


def _prompt_parts(trajectory: Trajectory) -> tuple[list[Declared], Family, dict[str, Any]]:
  system = next(m.content for m in trajectory.messages if m.role == "System")
  request = next(m.content for m in trajectory.messages if m.role == "User")
  family, args = parse_request(request)
  return parse_declarations(system), family, args


def solve(trajectory: Trajectory) -> str:
  """The gold call, from the request and the declarations alone: the family from the request's
  template, the tool by its description, the parameters by position."""
  declared, family, args = _prompt_parts(trajectory)
  return next(d for d in declared if d.family is family).call(args)


def name_rule(trajectory: Trajectory) -> str:
  """The declared tool whose name ends with the gold tool's canonical suffix (the first one if
  none does), with the gold values under its declared parameter names if it is the gold tool,
  else `name()`."""
  declared, family, args = _prompt_parts(trajectory)
  chosen = next((d for d in declared if d.name.endswith("_" + family.suffix)), declared[0])
  return chosen.call(args) if chosen.family is family else f"{chosen.name}()"


def canonical_rule(trajectory: Trajectory) -> str:
  """The gold call written with the canonical names (a model that memorized the tools)."""
  _, family, args = _prompt_parts(trajectory)
  return Declared(family, family.name, family.params).call(args)


RULES = {"solve": solve, "name_rule": name_rule, "canonical_rule": canonical_rule}


def rule_scores(trajectories: Sequence[Trajectory]) -> dict[str, dict[str, float]]:
  """TS / PI / CF (percent) of each rule in RULES on test items, with the study's scorer."""
  from jaxlab.eval.tool_use import GoldItem, score

  items = [GoldItem((parse_call(t.messages[-1].content),)) for t in trajectories]
  return {
    name: score([parse_call(rule(t)) for t in trajectories], items) for name, rule in RULES.items()
  }
