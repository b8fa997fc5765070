"""The ``reviews-mini`` dataset: short product reviews, shipped with the package."""

from __future__ import annotations

import pandas as pd

POSITIVE = [
    "Works exactly as described, very happy with it",
    "Great value for the price, would buy again",
    "Arrived early and was easy to set up",
    "The battery lasts all day, impressive",
    "Solid build quality and it looks great",
    "Customer service sorted out my question within minutes",
    "My kids love it and use it every day",
    "Comfortable, light, and the sound is excellent",
    "Five stars, it replaced two older gadgets for me",
    "Simple to use even for my grandparents",
    "Better than the expensive brand I had before",
    "Fast shipping and careful packaging",
    "Does one thing and does it well",
    "The instructions were clear and it just worked",
    "Quiet, efficient and good looking",
    "I have recommended it to all my friends",
    "Sturdy enough to survive being dropped twice",
    "The app that comes with it is actually useful",
    "Perfect size for a small kitchen",
    "Excellent, worth every penny",
]
NEGATIVE = [
    "Stopped working after two days",
    "Cheap plastic that cracked on first use",
    "Nothing like the pictures, very disappointed",
    "The charger was missing from the box",
    "Far too loud and it smells of burnt plastic",
    "Support never answered my emails",
    "Returned it, a complete waste of money",
    "The buttons stick and the screen is dim",
]


def reviews_mini() -> pd.DataFrame:
    """Product reviews, positive/negative (28 rows, imbalanced 20:8), shipped in the package."""
    texts = POSITIVE + NEGATIVE
    labels = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    return pd.DataFrame({"text": texts, "label": labels})
