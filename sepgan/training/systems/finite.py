"""Stop a stage the moment training goes non-finite, and say where.

A NaN or an infinity in a loss term or a gradient ends the stage before the optimizer step that
would write it into the weights, with a `NonFiniteError` whose message names the stage, the
global step, the network (generator or discriminator) and the loss term. So no weights with
NaN are ever stepped into, validated, checkpointed or handed on: the stage runner turns the error
into a failed stage (`sepgan.training.stages`), the pipeline stops there and the run exits
non-zero. Validation is checked the same way (loss terms, SI-SDR and every weight and buffer)
before the checkpoint callbacks see its figures.

Without this, a run that had gone NaN at step 200 ran its remaining 5000 steps and kept the last
finite checkpoint as "best" without a word.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from sepgan.numerics import nonfinite


class NonFiniteError(RuntimeError):
    """Training produced a NaN or an infinity; the message names stage, step, network and loss term."""


def _values(terms: dict[str, torch.Tensor], names: Iterable[str]) -> str:
    """'name' = value for scalars; for a tensor of several values, how many of them are non-finite."""
    shown = []
    for name in names:
        value = terms[name].detach().float()
        if value.numel() == 1:
            shown.append(f"'{name}' = {float(value):.4g}")
        else:
            bad = int((~torch.isfinite(value)).sum())
            shown.append(f"'{name}' has {bad} non-finite of {value.numel()} values" if bad else f"'{name}' finite")
    return ", ".join(shown)


def _listing(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


class FiniteTraining:
    """Mixin for the stage systems (LightningModules): the checks and the messages.

    A system calls `watch(network, terms, batch)` with the loss terms of each update;
    `on_before_optimizer_step` (Lightning calls it after backward and before clipping and the step,
    in manual optimisation too) checks them and the network's gradients; validation steps call
    `watch_validation`. A system lists its networks in `networks()`: name -> (optimizer index,
    module), and can recompute the loss terms of a batch in `loss_terms(network, batch)` so that
    a non-finite gradient with finite losses is traced to the term that made it.
    """

    stage = "generator"

    # -- what each system provides ------------------------------------------------------------

    def networks(self) -> dict[str, tuple[int, torch.nn.Module]]:
        raise NotImplementedError

    def loss_terms(self, network: str, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # -- training -----------------------------------------------------------------------------

    def watch(self, network: str, terms: dict[str, torch.Tensor], batch: dict) -> None:
        """Remember `network`'s loss terms for the check before its next optimizer step."""
        if getattr(self, "_finite_pending", None) is None:
            self._finite_pending, self._finite_batch = {}, {}
        self._finite_pending.setdefault(network, []).append(terms)
        self._finite_batch[network] = batch

    def _network_of(self, optimizer) -> str:
        optimizers = [getattr(o, "optimizer", o) for o in self.trainer.optimizers]
        index = optimizers.index(getattr(optimizer, "optimizer", optimizer))
        return next(name for name, (i, _) in self.networks().items() if i == index)

    def _uses_loss_scaling(self) -> bool:
        # fp16 with a GradScaler: infinite gradients are routine there (the scaler skips that step)
        return getattr(self.trainer.precision_plugin, "scaler", None) is not None

    def on_before_optimizer_step(self, optimizer) -> None:
        network = self._network_of(optimizer)
        pending = (getattr(self, "_finite_pending", None) or {}).pop(network, [])
        # the terms of every batch since the last step (several with gradient accumulation); the first bad one is shown
        checked = [(step_terms, nonfinite(step_terms)) for step_terms in pending]
        terms, bad_terms = next(((t, bad) for t, bad in checked if bad), checked[-1] if checked else ({}, []))
        module = self.networks()[network][1]
        bad_grads = [] if self._uses_loss_scaling() else nonfinite(
            {name: p.grad for name, p in module.named_parameters() if p.grad is not None})
        message = None
        if bad_terms:
            message = f"loss term{'s' if len(bad_terms) > 1 else ''} of the {network} {_values(terms, bad_terms)}"
        elif bad_grads:
            message = self._explain_gradient(network, terms, bad_grads)
        self._decide(message, f"step {self.global_step}")

    def _explain_gradient(self, network: str, terms: dict[str, torch.Tensor], bad_grads: list[str]) -> str:
        culprits = self._blame(network)
        source = (f"from loss term{'s' if len(culprits) > 1 else ''} {', '.join(repr(c) for c in culprits)}"
                  if culprits else "from no single loss term")
        return (f"gradient of the {network} {source} is non-finite although every loss term is finite "
                f"({_values(terms, terms)}); parameters hit: {_listing(bad_grads)}")

    def _blame(self, network: str) -> list[str]:
        """The loss terms whose own gradient is non-finite, recomputed on the batch of the failed step."""
        batch = (getattr(self, "_finite_batch", None) or {}).get(network)
        if batch is None or self.trainer.world_size > 1:  # under DDP a rank's lone forward (SyncBatchNorm) would hang
            return []
        module = self.networks()[network][1]
        params = [p for p in module.parameters() if p.requires_grad]
        culprits = []
        try:
            with torch.enable_grad(), self.trainer.precision_plugin.forward_context():
                terms = self.loss_terms(network, batch)
            for name, value in terms.items():
                if not value.requires_grad:
                    continue
                grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
                if nonfinite({str(i): g for i, g in enumerate(grads) if g is not None}):
                    culprits.append(name)
        except Exception:  # the diagnosis must never hide the failure it explains
            return []
        return culprits

    # -- validation ---------------------------------------------------------------------------

    def watch_validation(self, values: dict[str, torch.Tensor]) -> None:
        """Check one validation batch's loss terms and scores; the first problem is reported at epoch end."""
        if getattr(self, "_finite_validation", None) is None:
            bad = nonfinite(values)
            if bad:
                self._finite_validation = f"validation value{'s' if len(bad) > 1 else ''} {_values(values, bad)}"

    def check_validation(self) -> None:
        """At the end of a validation: its values and every weight and buffer must be finite."""
        message, self._finite_validation = getattr(self, "_finite_validation", None), None
        if message is None:
            state = {name: t for name, t in self.state_dict().items() if torch.is_floating_point(t)}
            bad = nonfinite(state)
            if bad:
                message = f"non-finite weights: {_listing(bad)}"
        when = "sanity validation" if self.trainer.sanity_checking else f"validation at step {self.global_step}"
        self._decide(message, when)

    # -- the decision ---------------------------------------------------------------------------

    def _decide(self, message: str | None, when: str) -> None:
        """Raise `NonFiniteError` on every process when any of them found a problem (DDP-safe)."""
        failed = message is not None
        if self.trainer.world_size > 1:  # every rank must stop together, or the others wait forever
            failed = self.trainer.strategy.reduce_boolean_decision(failed, all=False)
        if failed:
            raise NonFiniteError(f"{self.stage} stage, {when}: "
                                 + (message or "non-finite values on another process")
                                 + ". Stopped before this reached the weights or a checkpoint")
