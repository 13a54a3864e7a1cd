"""Distribution: the strategy a config asks for, the chief, and the one ``fit`` path
every strategy trains through (with the documented workaround for Keras 3.15 under MultiWorkerMirroredStrategy).

A multi-worker start-up never hangs silently. ``TF_CONFIG`` is checked first (a malformed one is an error
naming it). Then the workers meet before TensorFlow starts (:func:`rendezvous`): each listens on its own
address of ``TF_CONFIG`` and waits until every other worker's address answers, for at most
``startup_timeout_s``; a worker that never answers is named, with ``TF_CONFIG``, in a ConnectionError (exit 1
from the tools). This is needed because the first worker (the coordination leader) otherwise waits for the
missing ones inside TensorFlow's C++ start-up, holding the interpreter, with no timeout that reaches it and no
way for Python to interrupt it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import keras
import tensorflow as tf

NOTICE_AFTER_S = 5.0  # a worker still waiting after this long says for whom, once


def cluster_of_tf_config(text: str | None = None) -> tuple[dict, str, int]:
    """(cluster {job: [address, ...]}, task type, task index) of ``TF_CONFIG``; ValueError naming ``TF_CONFIG``
    and what is wrong otherwise."""
    text = os.environ.get("TF_CONFIG", "") if text is None else text
    example = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {text[:200]!r}; {example}") from None
    cluster = value.get("cluster") if isinstance(value, dict) else None
    task = value.get("task") if isinstance(value, dict) else None
    if not isinstance(cluster, dict) or not cluster or not all(
            isinstance(addresses, list) and addresses and all(isinstance(a, str) and ":" in a for a in addresses)
            for addresses in cluster.values()):
        raise ValueError(f"TF_CONFIG needs \"cluster\": a job name -> list of host:port addresses, received "
                         f"{text[:200]!r}; {example}")
    if not isinstance(task, dict) or not isinstance(task.get("type"), str) or not isinstance(task.get("index"), int):
        raise ValueError(f"TF_CONFIG needs \"task\": {{\"type\": job name, \"index\": int}}, received "
                         f"{text[:200]!r}; {example}")
    if task["type"] not in cluster or not 0 <= task["index"] < len(cluster[task["type"]]):
        raise ValueError(f"TF_CONFIG's task {task['type']} {task['index']} is not in its cluster "
                         f"({', '.join(f'{job}: {len(a)}' for job, a in cluster.items())}): {text[:200]!r}")
    return cluster, task["type"], task["index"]


GREETING = b"keras_mv2seg rendezvous\n"  # what a task's listener says to whoever connects during the start-up
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS


def _answers_as_a_task(address: str, timeout_s: float = 0.5) -> bool:
    """Whether a task of this run answers at ``address``: its rendezvous listener's greeting, or -- a task that has
    passed the rendezvous -- TensorFlow's gRPC server, an HTTP/2 server answering the client preface with SETTINGS.
    A port that accepts and says nothing (another program, a stale forwarder) is not a task."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as connection:
            connection.settimeout(timeout_s)
            try:
                first = connection.recv(len(GREETING))
            except socket.timeout:
                first = b""
            if first:  # the greeting, or a gRPC server that opened with its own SETTINGS frame
                return first == GREETING or (len(first) >= 4 and first[3] == 4)
            connection.sendall(_HTTP2_PREFACE)
            frame = connection.recv(9)
            return len(frame) >= 4 and frame[3] == 4  # an HTTP/2 SETTINGS frame
    except (OSError, ValueError):
        return False


def rendezvous(cluster: dict, task_type: str, task_index: int, timeout_s: float, notice=print):
    """Listen on this task's own address, greeting whoever connects, while waiting until every other task answers
    as one (:func:`_answers_as_a_task`: its greeting, or TensorFlow's own server on that port once it has passed;
    each task does the same, so all of them pass). ConnectionError naming the silent tasks and ``TF_CONFIG`` after
    ``timeout_s``; a plain Python loop, so Ctrl+C stops it at once."""
    own = cluster[task_type][task_index]
    port = int(own.rpartition(":")[2])
    peers = {f"{job} {index} at {address}": address for job, addresses in cluster.items()
             for index, address in enumerate(addresses) if (job, index) != (task_type, task_index)}
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", port))
    except OSError as error:
        listener.close()
        raise ConnectionError(f"TF_CONFIG gives this process ({task_type} {task_index}) the address {own}, but port "
                              f"{port} cannot be opened here ({error}); TF_CONFIG={os.environ.get('TF_CONFIG', '')}")
    listener.listen(64)
    listener.settimeout(0.1)
    stop = threading.Event()
    greeter = threading.Thread(target=_greet, args=(listener, stop), daemon=True)  # answers while we probe
    greeter.start()
    start, answered, told = time.monotonic(), set(), False
    try:
        while True:
            answered |= {name for name, address in peers.items()
                         if name not in answered and _answers_as_a_task(address)}
            silent = [name for name in peers if name not in answered]
            if not silent:
                return
            waited = time.monotonic() - start
            if waited > timeout_s:
                raise ConnectionError(
                    f"multi-worker start-up: no answer within {timeout_s:g} s from {', '.join(silent)}. Start every "
                    "worker of TF_CONFIG (each with its own task index), check the addresses and that the ports are "
                    f"open between the hosts, or raise startup_timeout_s; TF_CONFIG={os.environ.get('TF_CONFIG', '')}")
            if waited > NOTICE_AFTER_S and not told:
                notice(f"multi-worker start-up: waiting up to {timeout_s:g} s for {', '.join(silent)} (TF_CONFIG)")
                told = True
            time.sleep(0.2)
    finally:
        stop.set()
        greeter.join()
        listener.close()


def _greet(listener: socket.socket, stop: threading.Event):
    """Greet every peer that connects to this task's listener (they count this task as started) until ``stop``."""
    while not stop.is_set():
        try:
            connection, _ = listener.accept()
        except (socket.timeout, BlockingIOError):
            continue
        except OSError:
            return
        try:
            connection.sendall(GREETING)
        except OSError:
            pass
        connection.close()


def _multi_worker(timeout_s: float) -> tf.distribute.Strategy:
    cluster, task_type, task_index = cluster_of_tf_config()
    rendezvous(cluster, task_type, task_index, timeout_s)
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    if context.context().coordination_service is None:  # as TensorFlow configures it, plus a deadline for the
        jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster[job]))  # workers to
                for job in ("chief", "worker") if job in cluster]  # register (one that dies after the rendezvous)
        leader = "chief" if "chief" in cluster else "worker"
        context.context().configure_coordination_service(
            service_type="standalone", service_leader=f"/job:{leader}/replica:0/task:0", coordinated_jobs=jobs,
            cluster_register_timeout_in_ms=int(timeout_s * 1000))
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as error:
        raise ConnectionError(f"multi-worker start-up: the workers of TF_CONFIG answered but did not all register "
                              f"within {timeout_s:g} s ({type(error).__name__}: {str(error).splitlines()[0]}); "
                              f"TF_CONFIG={os.environ.get('TF_CONFIG', '')}") from None


def make_strategy(kind: str, startup_timeout_s: float = 600.0) -> tf.distribute.Strategy:
    """The strategy of ``train.distribution``; multi-worker start-up as in the module docstring."""
    if kind == "auto":
        if os.environ.get("TF_CONFIG"):
            kind = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "none"
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return _multi_worker(startup_timeout_s)


def is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (resolver.task_type == "worker" and resolver.task_id == 0
                                                      and "chief" not in resolver.cluster_spec().as_dict())


def fit(model: keras.Model, strategy: tf.distribute.Strategy, dataset: tf.data.Dataset, **fit_kwargs):
    """``model.fit`` under ``strategy``, also MultiWorkerMirroredStrategy.

    Keras 3.15's ``fit`` first builds the compiled loss and metrics from one batch, reducing the distributed
    batch with ``strategy.reduce`` -- which fails under MultiWorkerMirroredStrategy ("Attempt to convert a
    value (PerReplica...)", keras-team/keras#20585). So the build is done here, from one local batch inside
    the scope, and ``fit`` runs in the strategy's scope without the model's recorded strategy, so that it
    skips that step and still distributes (``distribute_strategy`` falls back to the current scope's). One
    path for every strategy: single device, mirrored and multi-worker train through the same train step.
    """
    local_batch = next(iter(dataset.take(1)))
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    train_step = model.train_step
    if multi_worker:
        # Keras reduces each step's logs across workers with strategy.reduce("MEAN", v, axis=0), which rejects
        # scalars: hand it [1]-shaped logs, which that reduction turns back into scalars.
        model.train_step = lambda data: {k: tf.reshape(v, [1]) for k, v in train_step(data).items()}
    with strategy.scope():
        model._symbolic_build(data_batch=local_batch)  # noqa: SLF001 - see the docstring
        recorded, model._distribute_strategy = model._distribute_strategy, None  # noqa: SLF001
        try:
            return model.fit(dataset, **fit_kwargs)
        finally:
            model._distribute_strategy = recorded  # noqa: SLF001
            if multi_worker:
                del model.train_step
