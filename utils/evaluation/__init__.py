"""From clips to numbers: batched inference over videos (`inference`), EF metrics and classification scores
(`metrics`), how well embeddings are ordered by EF (`representation`), 2-D projections of embeddings
(`projection`), Grad-CAM (`grad_cam`) and patient-level cross-validation folds (`folds`)."""
