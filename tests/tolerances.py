"""How closely figures computed from the same records in other batches must agree.

A record's error is the model's float32 arithmetic. A dense model's errors are computed one row at a time
(``monitor.core.dense_errors``) and are the same to the bit in any batch; TensorFlow's kernels (the LSTM's path),
and so their rounding, depend on how many rows a batch has: the same string scored in a batch of one and in a batch of thousands differs by up to about 2e-5
relative (`make bench-batch-rounding`), and by how much depends on the processor (an hour's mean agreed
below 1e-9 on one of this project's machines, to 9e-9 on another). A stream cut into other batches (a restart, a
member's share, replay, an outage's small batches) therefore gives the same counts and verdicts, and errors,
sums and means equal to these bounds, not to the bit. A record more or less in an hour moves its mean by about
1/count, far more than ``SUM_REL``.
"""

RECORD_REL = 1e-4  # one record's error
SUM_REL = 1e-6  # an hour's sums and means, and what they feed (shares, percentiles of the errors)
Z_ABS = 1e-4  # the robust z: a difference of nearly equal means over a spread of at least 5 % of the baseline
