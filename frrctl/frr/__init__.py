"""FRR drivers: one small interface, vtysh and northbound gRPC back ends."""
