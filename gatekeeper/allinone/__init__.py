"""Every service in one process, and the embedded stand-ins (ZooKeeper, Gerrit, two clouds) for a demo gate."""
