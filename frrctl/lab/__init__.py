"""The lab: the fleet of the inventory, built in network namespaces with real FRR."""
