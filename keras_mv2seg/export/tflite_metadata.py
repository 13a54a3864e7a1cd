"""LiteRT (TFLite) model metadata for image segmenters, as MediaPipe Tasks' ``ImageSegmenter`` and the TFLite
Task Library read it: written and read back here with the ``flatbuffers`` runtime TensorFlow already installs.

What a segmenter file carries (:func:`segmenter_metadata`, :func:`attach`):

* ``TFLITE_METADATA`` in the model's ``metadata`` list: a ``tflite.ModelMetadata`` flatbuffer (file identifier
  ``M001``, the LiteRT metadata schema ``metadata_schema.fbs``) with the model's name, description, version,
  author and license; the input tensor as an RGB image (``ImageProperties``) with ``NormalizationOptions``
  (mean 0 / std 1 for float input, since normalisation is inside the graph; none for uint8 input); the output
  tensor with its class names as an associated ``TENSOR_AXIS_LABELS`` file (``TENSOR_VALUE_LABELS`` for the
  int32 class map, whose values are the class ids);
* for score outputs, a ``SEGMENTER_METADATA`` custom metadata (MediaPipe's ``image_segmenter_metadata_schema.fbs``,
  identifier ``V001``) declaring the output's activation: ``SOFTMAX`` for logits (the client applies it),
  ``NONE`` for probabilities;
* the associated files (``labels.txt``) as a zip archive appended to the flatbuffer, where the metadata
  extractors look for them; ``min_parser_version`` as MediaPipe's metadata_version.cc computes it for the fields
  used (1.5.0 with custom metadata, else 1.0.0).

Why this writer rather than a package's: ``tflite-support`` pins protobuf < 4 (TensorFlow 2.21 needs >= 6);
MediaPipe's writer imports a compiled module its wheel does not ship and the wheel pulls
``opencv-contrib-python``, which clashes with ``opencv-python-headless``. The tests check every file written
here with MediaPipe's own generated schema reader and its ``ImageSegmenter`` (docs/dependencies.md).
"""

from __future__ import annotations

import importlib
import io
import zipfile
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from flatbuffers import number_types, table

METADATA_NAME = "TFLITE_METADATA"  # the model's metadata entry MediaPipe and the Task Library read
METADATA_IDENTIFIER = b"M001"
SEGMENTER_NAME = "SEGMENTER_METADATA"  # MediaPipe's custom metadata for image segmenters
SEGMENTER_IDENTIFIER = b"V001"
ACTIVATIONS = {"none": 0, "sigmoid": 1, "softmax": 2}
FILE_TYPES = {"descriptions": 1, "tensor_axis_labels": 2, "tensor_value_labels": 3}
LABELS_FILE = "labels.txt"

# Union and enum values of metadata_schema.fbs that are written here.
_IMAGE_PROPERTIES = 2  # ContentProperties: FeatureProperties = 1, ImageProperties = 2
_FEATURE_PROPERTIES = 1
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions
_RGB = 1  # ColorSpaceType


@dataclass
class TensorInfo:
    """One tensor's metadata: ``image`` (an RGB image input, with ``mean``/``std`` normalisation or none) or a
    feature output, with associated files ``(name, type)`` (a key of :data:`FILE_TYPES`)."""
    name: str
    description: str
    image: bool = False
    size: tuple | None = None  # (H, W) of an image input
    mean: tuple | None = None
    std: tuple | None = None
    files: list = field(default_factory=list)


@dataclass
class SegmenterMetadata:
    """Everything :func:`segmenter_metadata` writes; ``activation`` None: no ``SEGMENTER_METADATA``."""
    name: str
    description: str
    version: str
    input: TensorInfo
    output: TensorInfo
    activation: str | None = None
    author: str = ""
    license: str = ""


# --- writing ----------------------------------------------------------------------------------------------------

def _strings(builder, values):
    return [builder.CreateString(value) for value in values]


def _vector(builder, offsets):
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _floats(builder, values):
    return builder.CreateNumpyVector(np.asarray(values, np.float32))


def _table(builder, slots: int, offsets=(), scalars=()):
    """A table from ``offsets`` [(slot, offset)] and ``scalars`` [(slot, prepend method, value)], the children
    already in the builder."""
    builder.StartObject(slots)
    for slot, method, value in scalars:
        getattr(builder, method)(slot, value, 0)
    for slot, offset in offsets:
        if offset is not None:
            builder.PrependUOffsetTRelativeSlot(slot, offset, 0)
    return builder.EndObject()


def _aligned_bytes(builder, data: bytes, alignment: int):
    """A ubyte vector aligned to ``alignment`` (``force_align`` of CustomMetadata.data)."""
    builder.StartVector(1, len(data), alignment)
    for value in reversed(data):
        builder.PrependUint8(value)
    return builder.EndVector()


def _associated_file(builder, name: str, kind: str, description: str = ""):
    name_offset, description_offset = _strings(builder, (name, description))
    return _table(builder, 5, [(0, name_offset), (1, description_offset)],
                  [(2, "PrependInt8Slot", FILE_TYPES[kind])])


def _tensor(builder, info: TensorInfo):
    files = [_associated_file(builder, name, kind, "class names, one per line (line = class id)")
             for name, kind in info.files]
    units = None
    if info.image:
        size = None
        if info.size:
            size = _table(builder, 2, scalars=[(0, "PrependUint32Slot", int(info.size[1])),
                                               (1, "PrependUint32Slot", int(info.size[0]))])
        properties = _table(builder, 2, [(1, size)], [(0, "PrependInt8Slot", _RGB)])
        kind = _IMAGE_PROPERTIES
        if info.mean is not None:
            mean, std = _floats(builder, info.mean), _floats(builder, info.std)
            options = _table(builder, 2, [(0, mean), (1, std)])
            unit = _table(builder, 2, [(1, options)], [(0, "PrependUint8Slot", _NORMALIZATION_OPTIONS)])
            units = _vector(builder, [unit])
    else:
        properties, kind = _table(builder, 0), _FEATURE_PROPERTIES
    content = _table(builder, 3, [(1, properties)], [(0, "PrependUint8Slot", kind)])
    name, description = _strings(builder, (info.name, info.description))
    return _table(builder, 7, [(0, name), (1, description), (3, content), (4, units),
                               (6, _vector(builder, files) if files else None)])


def _segmenter_options(activation: str) -> bytes:
    builder = flatbuffers.Builder(0)
    builder.Finish(_table(builder, 2, scalars=[(0, "PrependInt8Slot", ACTIVATIONS[activation])]),
                   SEGMENTER_IDENTIFIER)
    return bytes(builder.Output())


def min_parser_version(info: SegmenterMetadata) -> str:
    """The metadata parser version the fields written here need (MediaPipe's metadata_version.cc: custom
    metadata arrived in 1.5.0; everything else used here is in 1.0.0)."""
    return "1.5.0" if info.activation is not None else "1.0.0"


def segmenter_metadata(info: SegmenterMetadata) -> bytes:
    """The ``ModelMetadata`` flatbuffer of a one-input, one-output image segmenter."""
    if info.activation is not None and info.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)} or None, received {info.activation!r}")
    builder = flatbuffers.Builder(1024)
    inputs = _vector(builder, [_tensor(builder, info.input)])
    outputs = _vector(builder, [_tensor(builder, info.output)])
    custom = None
    if info.activation is not None:
        name = builder.CreateString(SEGMENTER_NAME)
        data = _aligned_bytes(builder, _segmenter_options(info.activation), 16)
        custom = _vector(builder, [_table(builder, 2, [(0, name), (1, data)])])
    subgraph = _table(builder, 10, [(2, inputs), (3, outputs), (9, custom)])
    name, description, version, author, license_, parser = _strings(
        builder, (info.name, info.description, info.version, info.author, info.license, min_parser_version(info)))
    root = _table(builder, 8, [(0, name), (1, description), (2, version), (3, _vector(builder, [subgraph])),
                               (4, author), (5, license_), (7, parser)])
    builder.Finish(root, METADATA_IDENTIFIER)
    return bytes(builder.Output())


def _schema():
    # TensorFlow's generated TFLite schema (object API), beside its converter; not re-exported by tf.lite.
    return importlib.import_module("tensorflow.lite.python.schema_py_generated")


def attach(model_content: bytes, metadata: bytes, files: dict[str, bytes]) -> bytes:
    """``model_content`` with ``metadata`` as its ``TFLITE_METADATA`` entry (replacing an earlier one) and
    ``files`` (name -> bytes) appended as a zip archive, as the metadata extractors read them."""
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_content, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, np.uint8)
    model.buffers = model.buffers or []
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if _text(m.name) == METADATA_NAME), None)
    if entry is None:
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        model.metadata.append(entry)
        model.buffers.append(buffer)
        entry.buffer = len(model.buffers) - 1
    else:
        model.buffers[entry.buffer] = buffer
    builder = flatbuffers.Builder(len(model_content) + len(metadata) + 1024)
    builder.Finish(model.Pack(builder), b"TFL3")
    stream = io.BytesIO(bytes(builder.Output()))
    stream.seek(0, io.SEEK_END)
    with zipfile.ZipFile(stream, "a") as archive:  # appended after the flatbuffer: offsets from the archive start
        for name, data in files.items():
            archive.writestr(name, data)
    return stream.getvalue()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- reading (the export's own check; the tests read with MediaPipe's reader) ------------------------------------

def _table_at(buffer, position):
    return table.Table(buffer, position)


def _root(buffer: bytes):
    return _table_at(bytearray(buffer), flatbuffers.encode.Get(number_types.UOffsetTFlags.packer_type, buffer, 0))


def _field(tab, slot):
    return tab.Offset(4 + 2 * slot)  # a table's slot i sits at vtable offset 4 + 2 i


def _string(tab, slot):
    offset = _field(tab, slot)
    return tab.String(offset + tab.Pos).decode() if offset else None


def _scalar(tab, slot, flags, default=0):
    offset = _field(tab, slot)
    return tab.Get(flags, offset + tab.Pos) if offset else default


def _child(tab, slot):
    offset = _field(tab, slot)
    return _table_at(tab.Bytes, tab.Indirect(offset + tab.Pos)) if offset else None


def _tables(tab, slot):
    offset = _field(tab, slot)
    if not offset:
        return []
    start, count = tab.Vector(offset), tab.VectorLen(offset)
    return [_table_at(tab.Bytes, tab.Indirect(start + 4 * index)) for index in range(count)]


def _float_vector(tab, slot):
    offset = _field(tab, slot)
    if not offset:
        return None
    return [float(v) for v in tab.GetVectorAsNumpy(number_types.Float32Flags, offset)]


def metadata_buffer(content: bytes) -> bytes | None:
    """The ``TFLITE_METADATA`` flatbuffer of a TFLite file (None where it has none)."""
    schema = _schema()
    model = schema.Model.GetRootAs(content, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name().decode() == METADATA_NAME:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def read_segmenter_metadata(content: bytes) -> dict | None:
    """What a TFLite file's metadata says, as a dict (None: no metadata); the associated files' names are
    checked against the appended zip archive (``files_present``)."""
    buffer = metadata_buffer(content)
    if buffer is None:
        return None
    if buffer[4:8] != METADATA_IDENTIFIER:
        raise ValueError(f"the {METADATA_NAME} buffer is not model metadata (identifier {buffer[4:8]!r})")
    root = _root(buffer)
    subgraph = _tables(root, 3)[0]

    def tensor(tab):
        content_table = _child(tab, 3)
        kind = _scalar(content_table, 0, number_types.Uint8Flags) if content_table else 0
        result = {"name": _string(tab, 0), "description": _string(tab, 1),
                  "content": {_IMAGE_PROPERTIES: "image", _FEATURE_PROPERTIES: "feature"}.get(kind, "none"),
                  "files": [(_string(f, 0), {v: k for k, v in FILE_TYPES.items()}.get(
                      _scalar(f, 2, number_types.Int8Flags), "unknown")) for f in _tables(tab, 6)]}
        for unit in _tables(tab, 4):
            if _scalar(unit, 0, number_types.Uint8Flags) == _NORMALIZATION_OPTIONS:
                options = _child(unit, 1)  # a union: its type in slot 0, its table in slot 1
                result["mean"], result["std"] = _float_vector(options, 0), _float_vector(options, 1)
        return result

    activation = None
    for custom in _tables(subgraph, 9):
        if _string(custom, 0) == SEGMENTER_NAME:
            offset = _field(custom, 1)
            start, length = custom.Vector(offset), custom.VectorLen(offset)
            data = bytes(custom.Bytes[start:start + length])
            options = _root(data)
            value = _scalar(options, 0, number_types.Int8Flags)
            activation = {v: k for k, v in ACTIVATIONS.items()}.get(value, f"unknown ({value})")
    names = set()
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile:
        pass
    inputs = [tensor(t) for t in _tables(subgraph, 2)]
    outputs = [tensor(t) for t in _tables(subgraph, 3)]
    wanted = {name for t in inputs + outputs for name, _ in t["files"]}
    return {"name": _string(root, 0), "description": _string(root, 1), "version": _string(root, 2),
            "author": _string(root, 4), "license": _string(root, 5), "min_parser_version": _string(root, 7),
            "inputs": inputs, "outputs": outputs, "activation": activation,
            "files_present": sorted(wanted & names), "files_missing": sorted(wanted - names)}


def associated_file(content: bytes, name: str) -> bytes:
    """One associated file of a TFLite file (KeyError naming it where the file is not packed)."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return archive.read(name)
