"""The main job: a Ray Tune + Optuna (TPE) + ASHA sweep over skeleton-map representation, sigma, joint
weight and loss (and silhouettes, as a conditional branch), the top configurations confirmed with new
seeds (the profile's `confirm`), then the one-shot test of the selected model.

    python sweeps/representation.py                       # demo profile, synthetic data, local Ray, sqlite MLflow
    python sweeps/representation.py --profile smoke --name my-smoke
    python sweeps/representation.py --finetune-profile finetune_demo   # the two-stage study, one test look
    ray job submit --working-dir . -- python sweeps/representation.py --tracking-uri http://HEAD:5000 ...

Re-running the same --name continues an interrupted sweep (Tune restore, same MLflow runs). Trials get
train/val ids only; the driver selects the winner on val, then opens the test lockbox exactly once.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from scolio_sweep.cli import add_sweep_arguments, profile_from_args, run_sweep_cli, settings_from_args
from scolio_sweep.settings.profile import for_deferred_test, load_profile


def run_representation_sweep(args: argparse.Namespace):
    profile = profile_from_args(args)  # a bad profile is refused before Ray (or torch) is even imported
    finetune = load_profile(args.finetune_profile) if args.finetune_profile else None
    if args.defer_test or finetune is not None:
        profile, note = for_deferred_test(profile)
        if note:
            print(note)
    settings = settings_from_args(args)
    # The stages are imported once the command line holds: a refusal above costs no torch or sklearn import.
    from scolio_sweep.stages.answer import answer_sweep
    from scolio_sweep.stages.confirm import confirm
    from scolio_sweep.stages.finish import finish_sweep, print_summary
    from scolio_sweep.stages.prepare import prepare_sweep
    from scolio_sweep.stages.run import build_search, run_trials

    context = prepare_sweep(profile, settings, kind="representation")
    from scolio_sweep.trainables.baseline import train_baseline

    search_alg, scheduler = build_search(context.profile)
    results = run_trials(context, train_baseline, search_alg=search_alg, scheduler=scheduler)
    confirmed = confirm(context, train_baseline, results)  # None when the profile does not confirm
    answer = answer_sweep(context, results, confirmed)  # the best set and knob effects on val, before the test
    outcome = finish_sweep(context, results, reopen_test=args.reopen_test,
                           defer_test=args.defer_test or finetune is not None, confirmed=confirmed, answer=answer)
    print_summary(context, outcome)
    if finetune is None:
        return outcome
    # Stage 2 of the same study, in this driver: the finetune of this sweep's winner, then the study's one look.
    from scolio_sweep.studies.finetune import print_study, run_finetune_stage

    stage = dataclasses.replace(settings, name=f"{context.name}-finetune", data_root=None, partition=None)
    final, baseline_val = run_finetune_stage(finetune, stage, from_sweep=context.name, reopen_test=args.reopen_test)
    print_study(final, baseline_val)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_arguments(parser, default_profile="demo")
    parser.add_argument("--defer-test", action="store_true",
                        help="select on val but leave the study's one test look to its finetune stage "
                             "(python sweeps/finetune.py --from-sweep NAME)")
    parser.add_argument("--finetune-profile", metavar="PROFILE",
                        help="run the study's finetune stage on the winner in this command (e.g. finetune_demo), "
                             "then test the model that wins on val across both stages, once")
    return run_sweep_cli(run_representation_sweep, parser.parse_args(argv), "representation sweep")


if __name__ == "__main__":
    sys.exit(main())
