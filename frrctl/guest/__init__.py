"""Guest side: network configuration for routed VMs and the ConfigDrive that carries it."""
