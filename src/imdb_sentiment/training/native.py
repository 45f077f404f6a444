"""The ``native`` training backend: the project's own loop (:mod:`.loop`) on length-bucketed loaders,
one share of every batch per process under a launcher."""

from __future__ import annotations

from imdb_sentiment.training.backends import FitJob, register_backend
from imdb_sentiment.training.batching import make_loader
from imdb_sentiment.training.loop import FitResult, Trainer


@register_backend("native", network="torch", description="the project's own loop")
def fit_with_loop(job: FitJob) -> FitResult:
    training, runtime = job.training, job.runtime
    shard = {"rank": runtime.rank, "world_size": runtime.world_size}  # one share per process
    train_loader = make_loader(
        job.train_data, job.encoder, training.batch_size, True, job.seed, training.length_bucketing, **shard
    )
    valid_loader = make_loader(job.valid_data, job.encoder, training.eval_batch_size, False, **shard)
    trainer = Trainer(job.network, training, runtime, run_dir=job.run_dir, callbacks=job.callbacks,
                      show_progress=job.show_progress)  # fmt: skip
    return trainer.fit(train_loader, valid_loader, resume=job.resume)
