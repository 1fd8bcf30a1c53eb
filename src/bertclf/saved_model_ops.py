"""The op types a package written by bertclf contains: the allowlist its SavedModel is checked
against at load (`package.check_saved_model_ops`).

Collected from packages exported with every head pooling, with and without hidden layers, and
every long-text strategy and pooling, single- and multi-label (Sigmoid, and the thresholds'
Any, LogicalAnd, LogicalNot and OneHot), before and after the move to Keras 3 and KerasHub
(Einsum, Pow, Slice, VarIsInitializedOp), temperature scaling (Log1p), chunks pooled from
logits (LogSoftmax, format 8 on: until format 10 the list lacked it, and a single-label
chunks package was refused on the TensorFlow runtime), and format 7's
tokenizer and cleaning (the character table: HashTableV2, LookupTableImportV2 and
LookupTableFindV2 on tensors held in the graph; UnicodeDecode, UnicodeEncode, StringSplitV2,
Substr, UnsortedSegmentJoin and arithmetic); the tests fail
when a package they build uses an op that is not here, so the list follows the code. Add an op
only when bertclf's own export needs it, never one that reads or writes files, runs code or
reaches the network.
"""

PACKAGE_OPS = frozenset(
    {
        "Add",
        "AddV2",
        "All",
        "Any",
        "ArgMax",
        "Assert",
        "AssignVariableOp",
        "BatchMatMulV2",
        "BiasAdd",
        "BitwiseOr",
        "BroadcastArgs",
        "BroadcastTo",
        "Cast",
        "ConcatV2",
        "Const",
        "Cumsum",
        "DenseBincount",
        "DisableCopyOnRead",
        "Einsum",
        "Equal",
        "Erfc",
        "ExpandDims",
        "FastWordpieceTokenizeWithOffsets",
        "Fill",
        "GatherV2",
        "Greater",
        "GreaterEqual",
        "HashTableV2",
        "Identity",
        "If",
        "Less",
        "LessEqual",
        "Log",
        "Log1p",
        "LogSoftmax",
        "LogicalAnd",
        "LogicalNot",
        "LogicalOr",
        "LookupTableFindV2",
        "LookupTableImportV2",
        "MatMul",
        "Max",
        "Maximum",
        "Mean",
        "Minimum",
        "Mul",
        "Neg",
        "NoOp",
        "NotEqual",
        "OneHot",
        "OnesLike",
        "Pack",
        "PartitionedCall",
        "Placeholder",
        "Pow",
        "Prod",
        "RaggedGather",
        "RaggedRange",
        "RaggedTensorToTensor",
        "RandomUniform",
        "Range",
        "ReadVariableOp",
        "RealDiv",
        "Relu",
        "Reshape",
        "ResourceGather",
        "Rsqrt",
        "Select",
        "SelectV2",
        "Shape",
        "ShardedFilename",
        "Sigmoid",
        "Size",
        "Slice",
        "Softmax",
        "SquaredDifference",
        "Squeeze",
        "StatefulPartitionedCall",
        "StatelessIf",
        "StaticRegexFullMatch",
        "StaticRegexReplace",
        "StopGradient",
        "StridedSlice",
        "StringJoin",
        "StringLength",
        "StringSplitV2",
        "Sub",
        "Substr",
        "Sum",
        "Tanh",
        "Tile",
        "Transpose",
        "UnicodeDecode",
        "UnicodeEncode",
        "UnsortedSegmentJoin",
        "UnsortedSegmentMax",
        "UnsortedSegmentSum",
        "VarHandleOp",
        "VarIsInitializedOp",
        "Where",
        "ZerosLike",
    }
)

# Variables are saved and restored through these; they touch files, so they are allowed only in
# the two functions TensorFlow's saver writes (those the saver_def's save and restore nodes
# call), never in one a signature reaches or any other.
CHECKPOINT_OPS = frozenset({"MergeV2Checkpoints", "RestoreV2", "SaveV2"})
