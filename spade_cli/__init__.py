"""The console scripts of spade-tf, one module per command, on one skeleton (``app``).

============================  ==============================  ================================
command                       module                          library it drives
============================  ==============================  ================================
``spade-tfrecords``           :mod:`spade_cli.tfrecords`      :mod:`tfrecords_tools`
``spade-train``               :mod:`spade_cli.train`          :mod:`spade_tf.training`
``spade-convert-torch``       :mod:`spade_cli.convert_torch`  :mod:`spade_tf.convert`
``spade-export``              :mod:`spade_cli.export`         :mod:`spade_tf.export`
``spade-eval``                :mod:`spade_cli.evaluate`       :mod:`spade_tf.evaluation`
``spade-serve``               :mod:`spade_cli.serve`          :mod:`serving`
``spade-synthesize``          :mod:`spade_cli.synthesize`     :mod:`serving`, :mod:`spade_tf`
============================  ==============================  ================================

Each module's ``main(argv)`` builds an ``argparse`` parser and hands it to
:func:`spade_cli.app.run`, which parses, quiets TensorFlow, runs the command and turns the
library's errors into one line and an exit status. Modules import TensorFlow only after
parsing, so ``--help`` answers at once (``import spade_tf`` imports no TensorFlow: its
public names load on first use; see there). The table of commands, read by ``setup.py``,
is :mod:`spade_cli.commands`.
"""
