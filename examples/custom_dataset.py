"""Register your own dataset in Python, fine-tune on it, and score it.

A dataset is a function with no arguments that returns a pandas DataFrame with a text column
and a label column (or a mapping of ready-made "train" / "validation" / "test" frames).
Registering it makes its name usable wherever a dataset name is: ``Trainer(dataset=...)``,
``TrainConfig(dataset=...)``, and ``llmclf fit --dataset`` once it is a plugin
(see examples/plugin_package).

The data here is examples/data/tickets.csv: 60 support tickets in three queues (billing,
account, hardware). Run it as:

    python examples/custom_dataset.py                   # GPT-2 small, pretrained weights
    python examples/custom_dataset.py --backbone gpt2-tiny --weights random --epochs 1
                                                        # seconds on a CPU, no download
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import llmclf
from llmclf.evaluation import evaluate_run

TICKETS = Path(__file__).resolve().parent / "data" / "tickets.csv"


@llmclf.datasets.register("tickets")
def tickets() -> pd.DataFrame:
    """Support tickets: billing, account, hardware (60 rows, examples/data/tickets.csv)."""
    # Any source works (a database query, an API, several files joined): what matters is a
    # frame with a "text" and a "label" column. Other column names can be mapped with
    # Trainer(text_column=..., label_column=...).
    return pd.read_csv(TICKETS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="gpt2-small", help="default: %(default)s")
    parser.add_argument("--weights", default="pretrained", help="pretrained, random, or a path")
    parser.add_argument("--trainable", default="last-block", help="default: %(default)s")
    parser.add_argument("--epochs", type=int, default=5, help="default: %(default)s")
    parser.add_argument("--lr", type=float, default=5e-5, help="default: %(default)s")
    parser.add_argument("--output", default="runs/tickets", help="default: %(default)s")
    args = parser.parse_args(argv)

    trainer = llmclf.Trainer(
        dataset="tickets",  # the name registered above
        balance="none",  # the queues are already the same size
        backbone=args.backbone,
        weights=args.weights,
        trainable=args.trainable,
        epochs=args.epochs,
        lr=args.lr,
        output=args.output,
    )
    run = trainer.fit(overwrite=True)
    print(f"saved {run.output_dir}")
    for split, metrics in run.metrics.items():
        print(f"{split:<10} accuracy {metrics['accuracy']:.3f}  macro F1 {metrics['macro_f1']:.3f}")

    # `llmclf evaluate` in another process would not know "tickets" (it is registered in this
    # script only); evaluate_run, called here, does. It scores the run's saved test rows.
    report = evaluate_run(run.output_dir, split="test")
    print(f"re-evaluated {report['scope']}: accuracy {report['accuracy']:.3f}")

    classifier = llmclf.Classifier.load(run.output_dir)
    texts = [
        "I was billed twice for the same order",
        "The screen of my laptop stays black",
        "How do I reset my password?",
    ]
    for text, prediction in zip(texts, classifier.predict(texts), strict=True):
        print(f"{prediction.label:<10} {prediction.score:.2f}  {text}")


if __name__ == "__main__":
    main()
