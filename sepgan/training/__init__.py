"""Training: Lightning systems, the three stages and the pipeline, distributed helpers, config builders."""
