"""Dataset folders -> sharded TFRecords for spade-tf, checked on the way in."""
