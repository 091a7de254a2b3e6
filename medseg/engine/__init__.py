"""Training (:mod:`medseg.engine.train`) and inference (:mod:`medseg.engine.infer`)."""
