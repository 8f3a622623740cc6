"""Records and interfaces the services share: a pipeline's state and its ZooKeeper store, the events pipelines
react to, and the interfaces a source driver (Gerrit) implements for the scheduler."""
