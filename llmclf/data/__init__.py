"""Data preparation: datasets, cleaning, labels, balancing, splits, tokenizer, padding, loaders.

One job a module, in pipeline order: ``sources`` (registered datasets, ``sms`` built in) and
``readers`` (data files) -> ``clean`` -> ``labels`` -> ``balance`` -> ``split`` ->
``tokenizer``; ``pipeline`` composes them (``prepare_data``) and ``report`` counts every row.
``padding`` and ``loaders`` turn encoded splits into batches. Importing this package imports
neither pandas nor torch.
"""
