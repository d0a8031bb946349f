"""The sweep side of scoliotune: Ray Tune trainables and the driver that searches, stops early, confirms,
selects on val and opens the test lockbox once. Laid out like Ray Tune's own folders:

    trainables/  the Tune function trainables (they never see test data)
    search/      the search space, searchers and early-stopping schedulers
    settings/    the profile schema (YAML -> typed, checked before Ray starts) and the run settings
    engine/      the Tune glue: Ray connection and restore, the MLflow lifecycle callback, storage, private Ray
    stages/      the driver's stages: prepare -> run -> confirm -> finish
    studies/     what a study adds on top: the finetune stage, the partition table, the DRF comparison
    cli.py       the flags every entry script in sweeps/ shares (the driver never imports it)
"""
