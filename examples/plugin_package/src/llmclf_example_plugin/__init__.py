"""An example llmclf plugin: one dataset and one balancer, registered through entry points."""

__version__ = "0.1.0"
