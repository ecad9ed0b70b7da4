"""Dataset specs as data, one module per catalog task type (coding, mathematics, reasoning,
knowledge, ...): source, prompt, extraction, metrics and headline metric, each written once for
its kind (`evalmap.tasks.kinds`). `evalmap.tasks.registry` names every spec by dataset id."""
