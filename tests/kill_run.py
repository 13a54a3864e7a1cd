"""Run a tiny training and SIGKILL this very process at a named point (for tests/test_fault_injection.py).

    python tests/kill_run.py CONFIG_FILE WORK_DIR POINT
POINT: best_tmp (best weights half written), before_metrics (best weights and best.json written, the
metrics line not yet), summary_tmp (summary temporary written, not yet renamed), checkpoint (right after the
second checkpoint), micro_batch (at the fifth micro-batch of a run with train.accumulation_steps 2: mid-way
through its third update, after the second checkpoint).
"""

import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_mv2seg  # noqa: E402
from keras_mv2seg.training import trainer  # noqa: E402


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def main(config_file, work_dir, point):
    config = keras_mv2seg.get_config(config_file)
    real_weights, real_append, real_text = trainer.save_weights, trainer.append_line, trainer.write_text
    real_save = trainer._Run.save_checkpoint
    saves = []

    def weights(model, path, config=None):
        if point == "best_tmp" and path.name == "best.weights.h5":
            model.save_weights(path.with_name("best.tmp.weights.h5"))
            die()
        real_weights(model, path, config)

    def append(path, line):
        if point == "before_metrics":
            die()
        real_append(path, line)

    def text(path, content):
        if point == "summary_tmp" and path.name == "summary.json":
            Path(str(path) + ".tmp").write_text(content[: len(content) // 2])
            die()
        real_text(path, content)

    def save(self, iteration):
        real_save(self, iteration)
        saves.append(iteration)
        if point == "checkpoint" and len(saves) == 2:
            die()

    class MidAccumulation(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            if point == "micro_batch" and self.batches == 5:
                die()

    trainer.save_weights, trainer.append_line, trainer.write_text = weights, append, text
    trainer._Run.save_checkpoint = save
    trainer.train(config, work_dir, verbose=0, callbacks=[MidAccumulation()])


if __name__ == "__main__":
    main(*sys.argv[1:4])
