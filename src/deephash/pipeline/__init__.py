"""What every command shares, from the data set to the test results; the commands in
:mod:`deephash.studies` open run folders and call these.

    config.py    the shared configuration (torch-free): data, backbone, extraction,
                 evaluation, and BaselineConfig, the base every configuration extends
    cache.py     cache_location: where features and data-set fingerprints are cached
    protocol.py  open_protocol: the data set and its seeded splits; write_splits
    features.py  load_features: backbone features per view, extracted or read from the cache
    results.py   evaluate_split, validation_report, write_results: test metrics and files
    setup.py     training_setup: the training loop's inputs from a TrainConfig
    evaluate.py  evaluate_on_test, load_trained, evaluate_checkpoint: a trained model on test

The package imports none of its modules, so ``deephash.pipeline.config`` stays torch-free.
"""
