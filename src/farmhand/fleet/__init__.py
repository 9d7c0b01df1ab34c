"""Fleet work: one command, or one file tree, to many hosts at once.

``targets`` turns a target (host names, ``@group``, ``@role``, node-set ranges and set
operations, through ClusterShell's ``NodeSet``) into the farm's hosts; ``gather`` folds equal
answers under their node set (pure); ``run`` runs a command on many hosts with a fanout and
timeouts; ``direct`` connects to the hosts itself when no controller runs; ``releases`` and
``sync`` push a tree with rsync into timestamped releases behind an atomic ``current`` link,
``sync_progress`` adding every host's rsync up into one figure (pure); ``cssh`` opens a tmux
pane per host (ClusterSSH in a terminal); ``assets`` puts static files on S3 with boto3,
``assets_plan`` deciding which (pure).

The layer sits beside the controller: it uses drivers (the controller's open connections,
handed in by ``intents``, or its own), never the controller.
"""
