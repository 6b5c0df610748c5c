"""Optional training terms, each a named object in one registry (all off by default).

A term adds `weight * loss(model, output, batch)` to the cross-entropy of the next item, on the
positions that have a target. Each is a subclass of `Term` in `TERMS` (`register` adds one): its
`name` is the weight's setting (recorded in the checkpoint's training settings, a `--name` flag of
`train`), `options` are further settings it reads, `needs` the model capabilities it acts on (a
term for a part the model lacks adds nothing), and a term with parameters or state (the facet
probes) keeps them for the optimizer and the resume state. The training loop only asks the
registry: it has no per-term branches. `objectives_class()` is the checked settings dataclass of
the registered terms; `FacetObjectives` is that class for the built-in terms.

unsupervised (the chosen metadata-free setting, `checkpoints/*-fame-gated`, uses both)
- router_decisive: per head, decisive expert choice per position (mean router entropy) with every
  expert in use over the batch (minus the entropy of the batch-mean router weights).
- expert_diversity: mean squared cosine similarity between the expert queries W_Q^(h,n) of a head
  (flattened d x d' maps, over pairs of experts), so that a head's experts cannot stay near-copies.
weakly supervised (data sets with item facets; `checkpoints/demo-facets`)
- facet_weight (with facet_heads, e.g. "genre,actor"): head h is tied to the h-th facet by a linear
  probe from x_v^(h) to the facet's value (cross-entropy over items that have one).
- facet_exclusive: head h should carry *only* its facet: the share of x_v^(h)'s variance explained
  by the values of every other tied facet (between-value over total variance) is penalised.

Retired terms (they did not work: experiments/retired-options.md says what each measured; `RETIRED_AT` is
the last commit that has the code): gate_decisive, load_balance, router_z, head_diversity, gate_competence (with
competence_temperature), head_dropout, mixture_likelihood, router_clusters, head_clusters (with
head_clusters_epochs). A record that set one of them to a non-default value is refused in one line
naming that commit; a record with the default value opens as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import SequenceDataset
from .errors import ConfigError, FameError
from .labels import facet_labels
from .models import ModelOutput
from .options import check, option

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

# the last commit whose library has the retired terms (issue 40): `git show RETIRED_AT:fame_core/objectives.py`
RETIRED_AT = "9f2eb43"
RETIRED: dict[str, object] = {      # setting -> its default (a record holding the default opens as before)
    "gate_decisive": 0.0, "load_balance": 0.0, "router_z": 0.0, "head_diversity": 0.0, "gate_competence": 0.0,
    "competence_temperature": 1.0, "head_dropout": 0.0, "mixture_likelihood": 0.0, "router_clusters": 0.0,
    "head_clusters": 0.0, "head_clusters_epochs": 0}
RETIRED_WHERE = "experiments/retired-options.md"


def retired_message(key: str, value) -> str:
    return (f"setting {key} = {value!r} was retired in issue 40 (it did not work: {RETIRED_WHERE}); "
            f"the last commit that has it is {RETIRED_AT}: check it out to resume or retrain this run")


def drop_retired(record: dict, where: str = "objectives") -> dict:
    """A recorded objectives object without the retired settings; one that set one is refused."""
    out = dict(record)
    for key, default in RETIRED.items():
        if key in out:
            value = out.pop(key)
            if value != default:
                raise ConfigError(f"{where}: {retired_message(key, value)}")
    return out


@dataclass
class Batch:
    """What a term sees of one training batch: inputs and targets (B, T) and where a target is."""

    inputs: torch.Tensor
    targets: torch.Tensor
    where: torch.Tensor


class Term:
    """One training term. Subclasses set `name` (the weight's setting), `help`, and may set
    `options` (further settings: name -> option(...)), `needs` (capabilities of the model the term
    acts on: "gate", "router", "experts"; the term adds nothing where one is missing) and
    `state_key` (the resume state's key for `state_dict`)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    options: ClassVar[dict] = {}
    needs: ClassVar[frozenset] = frozenset()
    state_key: ClassVar[str | None] = None

    def __init__(self, settings, model: Recommender, dataset: SequenceDataset | None, device="cpu"):
        self.weight = float(getattr(settings, self.name))
        self.settings = settings

    @classmethod
    def wanted(cls, settings) -> bool:
        """Whether the settings switch this term on (its weight is not 0)."""
        return bool(getattr(settings, cls.name))

    def applies(self, model: Recommender) -> bool:
        return self.needs <= model.capabilities

    def loss(self, model: Recommender, out: ModelOutput, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def parameters(self) -> list:
        return []

    def start_epoch(self, model: Recommender, epoch: int) -> None:
        """Called before every epoch (a term that refreshes state from the model does it here)."""

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict) -> None:
        pass


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-9))).sum(-1)


class RouterDecisive(Term):
    name = "router_decisive"
    help = "weight: decisive expert choice, balanced per batch"
    needs = frozenset({"router"})

    def loss(self, model: Recommender, out, batch):
        if out.router_logits is None:
            return out.u.new_zeros(())
        beta = torch.softmax(out.router_logits.transpose(1, 2)[batch.where], -1)       # (M, H, N)
        return _entropy(beta).mean() - _entropy(beta.mean(0)).mean()


class ExpertDiversity(Term):
    name = "expert_diversity"
    help = "weight: squared cosine between a head's expert queries"
    needs = frozenset({"experts"})

    def loss(self, model: Recommender, out, batch):
        q = F.normalize(model.moe.W_Q.flatten(2), dim=-1)                              # (H, N, d*d')
        if q.shape[1] < 2:
            return out.u.new_zeros(())
        cos = torch.einsum("hnk,hmk->hnm", q, q)
        off = ~torch.eye(q.shape[1], dtype=torch.bool, device=q.device)
        return cos[:, off].pow(2).mean()


class FacetProbes(nn.Module):
    """Linear probes from each supervised head's item sub-embeddings to its facet's values."""

    def __init__(self, dataset: SequenceDataset, names: list[str], d_head: int, n_heads: int):
        super().__init__()
        if len(names) > n_heads:
            raise FameError(f"--facet-heads names {len(names)} facets but the model has {n_heads} heads")
        self.heads = list(range(len(names)))
        labels, sizes = [], []
        for name in names:
            y, values = facet_labels(dataset, name, max_values=50)
            labels.append(torch.as_tensor(y))
            sizes.append(len(values))
        for i, y in enumerate(labels):
            self.register_buffer(f"labels_{i}", y, persistent=False)
        self.probes = nn.ModuleList(nn.Linear(d_head, n) for n in sizes)

    def forward(self, sub_embeddings: torch.Tensor) -> torch.Tensor:
        """Mean probe cross-entropy of each tied head on its own facet (rows of sub_embeddings = item ids)."""
        loss = sub_embeddings.new_zeros(())
        for h, probe in zip(self.heads, self.probes):
            y = getattr(self, f"labels_{h}")
            keep = y >= 0
            loss = loss + F.cross_entropy(probe(sub_embeddings[h][keep]), y[keep])
        return loss / len(self.heads)


def facet_labels_of(dataset: SequenceDataset, names: list[str]) -> list[torch.Tensor]:
    """Each named facet's value index per item id (-1 where an item has none), as FacetProbes reads them."""
    return [torch.as_tensor(facet_labels(dataset, name, max_values=50)[0]) for name in names]


def facet_leakage(sub_embeddings: torch.Tensor, labels: list[torch.Tensor]) -> torch.Tensor:
    """Mean share of each tied head's variance explained by the *other* tied facets' values
    (head h is tied to labels[h]; rows of sub_embeddings = item ids)."""
    terms = []
    for h in range(len(labels)):
        for other, y in enumerate(labels):
            if other == h:
                continue
            keep = y >= 0
            X, yk = sub_embeddings[h][keep], y[keep]
            X = X - X.mean(0)
            counts = torch.bincount(yk).clamp_min(1).to(X.dtype)
            sums = torch.zeros(len(counts), X.shape[1], dtype=X.dtype, device=X.device).index_add_(0, yk, X)
            means = sums / counts[:, None]
            between = (counts[:, None] * means.pow(2)).sum() / len(yk)
            terms.append(between / X.pow(2).mean(0).sum().clamp_min(1e-9))
    return torch.stack(terms).mean() if terms else sub_embeddings.new_zeros(())


def _tied_facets(settings) -> tuple[str, ...]:
    return tuple(settings.facet_heads)


def _sub_embedding_rows(model: Recommender) -> torch.Tensor:
    """(H, n+1, d') item sub-embeddings with a zero row at the padding id 0 (row = item id)."""
    subs = model.item_sub_embeddings()[:, 1:]
    return torch.cat([subs.new_zeros(subs.shape[0], 1, subs.shape[2]), subs], 1)


class _TiedFacetTerm(Term):
    """A term on the heads tied to item facets by --facet-heads: on only when its weight and
    --facet-heads are given; needs the data set's facets, at most one facet per head."""

    @classmethod
    def wanted(cls, settings) -> bool:
        return bool(getattr(settings, cls.name)) and bool(_tied_facets(settings))

    def _facets(self, settings, model: Recommender, dataset) -> list[str]:
        if dataset is None:
            raise FameError("--facet-heads needs the data set's item facets")
        names = list(_tied_facets(settings))
        if len(names) > model.config.n_heads:
            raise FameError(f"--facet-heads names {len(names)} facets but the model has {model.config.n_heads} heads")
        return names


class FacetProbeTerm(_TiedFacetTerm):
    """--facet-weight with --facet-heads: linear probes (trained with the model; kept in the resume
    state under "probes") from each tied head's item sub-embeddings to its facet's values."""

    name = "facet_weight"
    help = "weight of the facet probes of --facet-heads"
    options = {"facet_heads": option((), "tie head h to the h-th facet, e.g. genre,actor")}
    state_key = "probes"

    def __init__(self, settings, model: Recommender, dataset, device="cpu"):
        super().__init__(settings, model, dataset, device)
        self.probes = FacetProbes(dataset, self._facets(settings, model, dataset), model.config.d_head,
                                  model.config.n_heads).to(device)

    def loss(self, model: Recommender, out, batch):
        return self.probes(_sub_embedding_rows(model))

    def parameters(self):
        return list(self.probes.parameters())

    def state_dict(self):
        return self.probes.state_dict()

    def load_state_dict(self, state):
        self.probes.load_state_dict(state)


class FacetExclusive(_TiedFacetTerm):
    """--facet-exclusive with --facet-heads: the other tied facets' share of each tied head's variance."""

    name = "facet_exclusive"
    help = "weight: remove the other --facet-heads facets from each tied head"

    def __init__(self, settings, model: Recommender, dataset, device="cpu"):
        super().__init__(settings, model, dataset, device)
        self.labels = [y.to(device) for y in facet_labels_of(dataset, self._facets(settings, model, dataset))]

    def loss(self, model: Recommender, out, batch):
        return facet_leakage(_sub_embedding_rows(model), self.labels)


TERMS: dict[str, type[Term]] = {}
_CLASS: list = []


def register(term: type[Term]) -> type[Term]:
    """Add a term to the registry (one line per term); returns it, so it can decorate the class."""
    if not term.name or not term.name.isidentifier():
        raise ValueError(f"a term needs a name that is a Python identifier, not {term.name!r}")
    TERMS[term.name] = term
    _CLASS.clear()
    return term


class Objectives:
    """Base of the settings dataclass of the registered terms (`objectives_class()`)."""

    def __post_init__(self):
        if isinstance(getattr(self, "facet_heads", ()), str):  # "genre,actor", as checkpoints of code 0.1.0 record it
            self.facet_heads = tuple(f.strip() for f in self.facet_heads.split(",") if f.strip())
        elif isinstance(getattr(self, "facet_heads", ()), list):
            self.facet_heads = tuple(self.facet_heads)
        check(self)

    @property
    def active(self) -> bool:
        return any(t.wanted(self) for t in TERMS.values())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record, where: str = "objectives"):
        from .options import from_dict

        if not isinstance(record, dict):
            raise ConfigError(f"{where} must be a JSON object, got {type(record).__name__}")
        return from_dict(cls, drop_retired(record, where), where)


def objectives_class() -> type:
    """The checked settings dataclass of the registered terms: one weight per term (default 0)
    plus each term's options. Rebuilt when `register` adds a term."""
    if not _CLASS:
        fields = []
        for term in TERMS.values():
            fields.append((term.name, float, option(0.0, term.help, min=0, max=1000)))
            for key, spec in term.options.items():
                hint = tuple[str, ...] if isinstance(spec.default, tuple) else type(spec.default)
                fields.append((key, hint, spec))
        _CLASS.append(dataclasses.make_dataclass("FacetObjectives", fields, bases=(Objectives,),
                                                 namespace={"__module__": __name__}))
    return _CLASS[0]


def build_terms(settings, model: Recommender, dataset: SequenceDataset | None, device="cpu") -> list[Term]:
    """The active terms of `settings` for this model (a term for a part the model lacks is left out)."""
    terms = [cls(settings, model, dataset, device) for cls in TERMS.values() if cls.wanted(settings)]
    return [t for t in terms if t.applies(model)]


def terms_loss(terms: list[Term], model: Recommender, out: ModelOutput, batch: Batch) -> torch.Tensor:
    """The weighted sum of the terms' losses."""
    total = out.u.new_zeros(())
    for t in terms:
        total = total + t.weight * t.loss(model, out, batch)
    return total


for _term in (ExpertDiversity, RouterDecisive, FacetProbeTerm, FacetExclusive):   # the order of the old sum
    register(_term)
FacetObjectives = objectives_class()
