"""Studies built from the stages: the finetune stage, the partition table, the DRF comparison."""
