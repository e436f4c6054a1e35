"""Where a round's time goes: its pieces timed alone, jaxmask and PyTorch alternating.

    python benchmarks/breakdown.py --batch_size=64 [--upsample=conv_transpose --pool=reduce_window] [--torch]   # flags: the layers before

A round is 4 × masker forward+backward, 3 × Φ forward+backward with weight
gradients (predictor), 1 × Φ forward+backward to its input only (obfuscator),
4 × top-K forward+backward and 7 Adam updates (4 masker, 3 Φ). Each piece is
compiled (or run eagerly) on its own; the sum, weighted by those counts, is
compared with the measured round. XLA's CPU profiler does not see inside the
Eigen convolutions (they run asynchronously in its thread pool), so timing
pieces is the reliable breakdown on CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def jax_pieces(spec, method, state, batches):
    import jax
    import jax.numpy as jnp
    import optax

    from jaxmask import topk
    from jaxmask.bench import _compile

    x = jnp.asarray(batches["image"][0])
    y = jnp.asarray(batches["label"][0])
    mv, pv = state.masker.variables, state.phi.variables

    def masker_fb(params, x):
        def f(p):
            m, _ = method.players.masker.apply({"params": p, "batch_stats": mv["batch_stats"]}, x,
                                       train=True, mutable=["batch_stats"])
            return jnp.sum(m * x[..., :1])
        return jax.grad(f)(params)

    def masker_f(params, x):
        return method.players.masker.apply({"params": params, "batch_stats": mv["batch_stats"]}, x,
                                   train=True, mutable=["batch_stats"])[0]

    def phi_fb(params, x, y):
        def f(p, x):
            logits, _ = method.players.phi.apply({"params": p, "batch_stats": pv["batch_stats"]}, x,
                                         train=True, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return jax.grad(f, argnums=(0, 1))(params, x)

    def phi_input_grad(params, x, y):
        def f(x):
            logits, _ = method.players.phi.apply({"params": params, "batch_stats": pv["batch_stats"]}, x,
                                         train=True, mutable=["batch_stats"])
            return -jnp.mean(jax.nn.log_softmax(logits))
        return jax.grad(f)(x)

    def topk_fb(m):
        (keep, rest), vjp = jax.vjp(lambda m: topk.topk_split(m, method.reveal.k), m)
        return keep, rest, vjp((keep, rest))[0]

    def adam(tx, params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    m = jax.random.uniform(jax.random.PRNGKey(0), x.shape[:-1] + (1,))
    mg = jax.tree.map(jnp.ones_like, mv["params"])
    pg = jax.tree.map(jnp.ones_like, pv["params"])
    pieces = {
        "masker_fwd": (masker_f, (mv["params"], x), 0),
        "masker_fwd_bwd": (masker_fb, (mv["params"], x), 4),
        "phi_fwd_bwd_weights": (phi_fb, (pv["params"], x, y), 3),
        "phi_fwd_bwd_input": (phi_input_grad, (pv["params"], x, y), 1),
        "topk_fwd_bwd": (topk_fb, (m,), 4),
        "adam_masker": (functools.partial(adam, method.players.masker_tx),
                        (mv["params"], state.masker.opt_state, mg), 4),
        "adam_phi": (functools.partial(adam, method.players.phi_tx),
                     (pv["params"], state.phi.opt_state, pg), 3),
    }
    out = {}
    for name, (fn, args, count) in pieces.items():
        compiled, _ = _compile(fn, *args)
        out[name] = (lambda c=compiled, a=args: jax.block_until_ready(c(*a)), count)
    return out


def torch_pieces(spec, state, batches):
    import jax
    import torch
    import torch.nn.functional as F

    import torch_reference as tr

    game = tr.game_for(spec)
    tr.load_flax_weights(game, jax.device_get(state))
    game.masker.train(), game.phi.train()
    x, y = game.to_input(batches["image"][0]), game.to_labels(batches["label"][0])
    m = torch.rand(x.shape[0], 1, x.shape[2], x.shape[3])

    def masker_fb():
        game.masker.zero_grad(set_to_none=True)
        (game.masker(x) * x[:, :1]).sum().backward()

    def masker_f():
        with torch.no_grad():
            game.masker(x)

    def phi_fb():
        game.phi.zero_grad(set_to_none=True)
        xi = x.detach().requires_grad_(True)
        F.cross_entropy(game.phi(xi), y).backward()

    def phi_input():
        for p in game.phi.parameters():
            p.requires_grad_(False)
        xi = x.detach().requires_grad_(True)
        (-F.log_softmax(game.phi(xi), -1).mean()).backward()
        for p in game.phi.parameters():
            p.requires_grad_(True)

    def topk_fb():
        mm = m.detach().requires_grad_(True)
        keep, rest = tr.topk_split(mm, spec.k)
        torch.autograd.backward((keep, rest), (keep, rest))

    masker_fb()
    phi_fb()

    return {"masker_fwd": (masker_f, 0), "masker_fwd_bwd": (masker_fb, 4),
            "phi_fwd_bwd_weights": (phi_fb, 3), "phi_fwd_bwd_input": (phi_input, 1),
            "topk_fwd_bwd": (topk_fb, 4), "adam_masker": (game.masker_opt.step, 4),
            "adam_phi": (game.phi_opt.step, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--upsample", default="dot", choices=["conv_transpose", "dot"])
    parser.add_argument("--pool", default="reshape", choices=["reduce_window", "reshape"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from jaxmask import platform
    platform.configure_xla_defaults()
    import jax

    from jaxmask import bench, build
    import variants

    spec = bench.Spec(batch_size=args.batch_size)
    method = build.build_method(spec.config())
    if (args.upsample, args.pool) != ("dot", "reshape"):   # else models.py as it is
        method = variants.with_variants(method, args.upsample, args.pool)
    state = build.create_train_state(method, jax.random.PRNGKey(0), (64, 64, 3))
    batches = bench.synthetic_batches(spec)
    frameworks = {"jax": jax_pieces(spec, method, state, batches)}
    if args.torch:
        frameworks["torch"] = torch_pieces(spec, state, batches)
    round_contender = bench.jax_contenders(spec, method, state, batches, ("round",))[0]
    frameworks["jax"]["round"] = (round_contender.call, 0)

    times = {fw: {name: [] for name in pieces} for fw, pieces in frameworks.items()}
    for fw, pieces in frameworks.items():      # warm-up
        for fn, _ in pieces.values():
            fn()
    for _ in range(args.repeats):
        for name in frameworks["jax"]:
            for fw, pieces in frameworks.items():
                if name in pieces:
                    start = time.perf_counter()
                    pieces[name][0]()
                    times[fw][name].append(time.perf_counter() - start)
    report = {"environment": {**bench.environment(), "loadavg": os.getloadavg()},
              "argv": sys.argv, "median_s": {}}
    print(f"batch {args.batch_size}, upsample={args.upsample}, pool={args.pool}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"{'piece':<22}{'count':>6}" + "".join(f"{fw + ' s':>12}{'x count':>10}" for fw in frameworks)
          + ("  torch/jax" if args.torch else ""))
    for fw in frameworks:
        report["median_s"][fw] = {n: statistics.median(t) for n, t in times[fw].items()}
    for name, (_, count) in frameworks["jax"].items():
        row = f"{name:<22}{count:>6}"
        for fw in frameworks:
            t = report["median_s"][fw].get(name)
            row += f"{t:12.4f}{t * count:10.3f}" if t is not None else " " * 22
        if args.torch and name in report["median_s"]["torch"]:
            row += f"  {report['median_s']['torch'][name] / report['median_s']['jax'][name]:8.2f}"
        print(row)
    for fw in frameworks:
        total = sum(report["median_s"][fw][n] * c for n, (_, c) in frameworks[fw].items())
        report.setdefault("weighted_sum_s", {})[fw] = total
        print(f"{fw}: sum of pieces × counts = {total:.3f} s"
              + (f"; measured round {report['median_s']['jax']['round']:.3f} s" if fw == "jax" else ""))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
