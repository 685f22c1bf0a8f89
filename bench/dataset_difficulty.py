"""How hard is the embedded synthetic data set? A measurement, not a test.

Prints the time to generate 10,000 images, the test accuracy of a linear (logistic-regression)
classifier on raw normalised pixels, and the test accuracy of two small nets (ResNet-8 from
resnet_core.nets.models and a 3-conv net) trained with the real BatchLoader (crop + flip on) for a few
hundred SGD steps. The generator is tuned so the linear probe stays near chance (position, rotation,
scale and colour vary independently of the class: no fixed pixel carries it) while the small nets
learn the shapes. Accuracies printed along the way are mid-schedule; run --steps N for an N-step run.

    python bench/dataset_difficulty.py [--steps 500] [--batch 128] [--lr 0.1] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_core.config import DataConfig  # noqa: E402
from resnet_core.data import BatchLoader, iter_test_batches, load_dataset, make_shapes, normalize  # noqa: E402


def three_conv_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),    # (B, 32, 16, 16)
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),   # (B, 64, 8, 8)
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),                  # (B, 128, 8, 8)
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(128, 10),                         # (B, 10)
    )


def small_nets() -> list[tuple[str, nn.Module]]:
    nets = [("3-conv net", three_conv_net())]
    try:
        from resnet_core.config import ModelConfig
        from resnet_core.nets.models import build_model

        nets.insert(0, ("resnet-8", build_model(ModelConfig(depth=8))))
    except Exception as e:  # models.py not there yet or broken: the 3-conv net alone
        print(f"(resnet_core.nets.models unavailable, {type(e).__name__}: {e}; 3-conv net only)")
    return nets


@torch.no_grad()
def accuracy(model: nn.Module, ds, device) -> float:
    model.eval()
    correct = total = 0
    for x, y in iter_test_batches(ds, 500, device):
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    model.train()
    return correct / total


def linear_probe(ds, iters: int) -> tuple[float, float, float]:
    """Best test accuracy of full-batch L-BFGS logistic regression over a few L2 strengths."""
    x_tr = normalize(ds.train_x, ds.mean, ds.std).flatten(1)            # (N, 3072)
    x_te = normalize(ds.test_x, ds.mean, ds.std).flatten(1)             # (M, 3072)
    best = (0.0, 0.0, 0.0)
    for l2 in (1e-4, 1e-3, 1e-2):
        lin = nn.Linear(x_tr.shape[1], len(ds.classes))
        opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=iters, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(lin(x_tr), ds.train_y) + l2 * lin.weight.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            train_acc = float((lin(x_tr).argmax(1) == ds.train_y).float().mean())
            test_acc = float((lin(x_te).argmax(1) == ds.test_y).float().mean())
        print(f"  linear probe, L2 {l2:g}: train {train_acc:.3f}  test {test_acc:.3f}")
        if test_acc > best[0]:
            best = (test_acc, train_acc, l2)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--linear-iters", type=int, default=150)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    # A seed no one else uses in this process, so the lru_cache cannot hide the generation time.
    t0 = time.perf_counter()
    make_shapes(10_000, 987_654_321)
    gen_s = time.perf_counter() - t0
    print(f"generation: 10,000 images in {gen_s:.2f} s ({10_000 / gen_s:,.0f} images/s)")

    ds = load_dataset(DataConfig(name="synthetic", n_train=10_000, n_test=2_000, seed=args.seed))
    print(f"data set: {len(ds.train_y)} train, {len(ds.test_y)} test, classes {', '.join(ds.classes)}")

    t0 = time.perf_counter()
    lin_acc, lin_train, l2 = linear_probe(ds, args.linear_iters)
    print(f"linear probe on raw pixels: test accuracy {lin_acc:.3f} (train {lin_train:.3f}, L2 {l2:g}; "
          f"chance 0.100) [{time.perf_counter() - t0:.0f} s]")

    device = torch.device("cpu")
    results = []
    for label, model in small_nets():
        torch.manual_seed(args.seed)
        results.append((label, train_net(label, model, ds, device, args)))
    print(f"SUMMARY generation_s={gen_s:.2f} linear_test_acc={lin_acc:.3f} " + " ".join(
        f"{label.replace(' ', '_')}@{step}={acc:.3f}" for label, curve in results for step, acc in curve))


def train_net(label: str, model: nn.Module, ds, device, args) -> list[tuple[int, float]]:
    """SGD with the real BatchLoader (crop + flip on); test accuracy every 100 steps."""
    # channels_last: oneDNN's NHWC kernels, several times faster on CPU (as resnet_core.training.loop does).
    model = model.to(device, memory_format=torch.channels_last)
    loader = BatchLoader(ds, args.batch, device, seed=args.seed, augment=True, channels_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    warmup = max(1, args.steps // 20)
    # Linear warm-up, then linear decay to zero: the short-run schedule of airbench.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (args.steps - s) / (args.steps - warmup))))
    t0 = time.perf_counter()
    curve = []
    for step in range(1, args.steps + 1):
        x, y = loader.next()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps:
            curve.append((step, accuracy(model, ds, device)))
            print(f"  {label}, step {step} (epoch {loader.epoch}): loss {loss.item():.3f}  "
                  f"test accuracy {curve[-1][1]:.3f}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    print(f"{label}: test accuracy {curve[-1][1]:.3f} after {args.steps} SGD steps at batch {args.batch}, "
          f"lr {args.lr} ({(time.perf_counter() - t0) / args.steps * 1000:.0f} ms/step)")
    return curve


if __name__ == "__main__":
    main()
