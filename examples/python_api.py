"""Fine-tune, load and predict with the Python API.

The defaults are the book's chapter 6 run: SMS spam, undersampled, GPT-2 small with pretrained
weights, the last block + final LayerNorm + head trainable, AdamW lr 5e-5, 5 epochs of batch 8.
The first run downloads the data, the tokenizer files and the weights into $LLMCLF_HOME
(default ~/.cache/llmclf).

    python examples/python_api.py
    python examples/python_api.py --backbone gpt2-tiny --weights random --trainable all \\
        --lr 1e-3 --epochs 1                # about a minute on a CPU, no weights download
    python examples/python_api.py --dataset examples/data/tickets.csv --balance none
"""

from __future__ import annotations

import argparse
from typing import Any

import llmclf
from llmclf.reporting import Reporter


class PrintReporter(Reporter):
    """Prints one line per epoch. The Trainer sends events; a reporter decides what to show."""

    def event(self, name: str, **data: Any) -> None:
        if name == "model":
            print(f"training {data['trainable']:,} of {data['total']:,} parameters")
        elif name == "epoch_end":
            print(
                f"epoch {data['epoch']}: train loss {data['train_loss']:.3f}, "
                f"validation loss {data['val_loss']:.3f}, "
                f"validation accuracy {data['val_accuracy']:.3f}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sms", help="a dataset name or a file")
    parser.add_argument("--balance", default="undersample", help="default: %(default)s")
    parser.add_argument("--backbone", default="gpt2-small", help="default: %(default)s")
    parser.add_argument("--weights", default="pretrained", help="pretrained, random, or a path")
    parser.add_argument("--trainable", default="last-block", help="default: %(default)s")
    parser.add_argument("--epochs", type=int, default=5, help="default: %(default)s")
    parser.add_argument("--lr", type=float, default=5e-5, help="default: %(default)s")
    parser.add_argument("--output", default="runs/python-api", help="default: %(default)s")
    args = parser.parse_args(argv)

    # 1. Configure. TrainConfig holds names and numbers only, so it round-trips through JSON
    #    (it is saved in the run directory). Unset fields keep the book's defaults.
    config = llmclf.TrainConfig(
        dataset=args.dataset,
        balance=args.balance,
        backbone=args.backbone,
        weights=args.weights,
        trainable=args.trainable,
        epochs=args.epochs,
        lr=args.lr,
        output=args.output,
    )
    assert llmclf.TrainConfig.from_json(config.to_json()) == config

    # 2. Fine-tune. fit() returns a Run: the output directory, the history, the metrics.
    run = llmclf.Trainer(config, reporter=PrintReporter()).fit(overwrite=True)
    test = run.metrics["test"]
    print(f"saved {run.output_dir}; test accuracy {test['accuracy']:.3f}")
    for name, scores in test["per_class"].items():
        print(f"  {name:<10} precision {scores['precision']:.3f}  recall {scores['recall']:.3f}")

    # 3. Load. A run directory is all a Classifier needs: no network, no $LLMCLF_HOME.
    classifier = llmclf.Classifier.load(run.output_dir)

    # 4. Predict. One Prediction per text, in input order (an empty text included).
    texts = [
        "WINNER!! You have been selected for a free prize. Call now to claim it.",
        "See you at 6? I'll bring the tickets.",
        "",
    ]
    for text, prediction in zip(texts, classifier.predict(texts), strict=True):
        probabilities = ", ".join(f"{k} {v:.2f}" for k, v in prediction.probabilities.items())
        print(f"{prediction.label:<10} {prediction.score:.2f}  ({probabilities})  {text!r}")


if __name__ == "__main__":
    main()
