"""`etf-engine bench`: a load generator for the gRPC service, measured against the gRPC floor.

  stats      latencies -> throughput and percentiles (exact nearest-rank, no binning)
  workers    the client processes: closed- and open-loop load on one channel each
  fixture    a throwaway server (its own process, durable journal) and the fund it is loaded with
  report     the table, JSON, --compare and the PNG plot
  run        the command: plan the phases, drive the workers, show progress, report
"""
