"""The DFUSE paper's published values (SoCC '25, Figs. 6-9), read off its
figures; ../shared/research/dfuse-paper.md section 5 lists them with notes.
The paper compares DFUSE with one baseline, WT+OCC (our writethrough mode);
it has no weak write-back numbers.
"""

READ_PCT = [0, 25, 50, 75, 100]

# Fig. 6: fio without contention, 4 nodes. Throughput MiB/s, latency ms.
FIG6 = {
    ("random", "throughput"): {"writethrough": [54.3, 56.1, 55.8, 55.6, 54.5],
                               "dfuse": [91.2, 68.4, 60.8, 56.5, 54.1]},
    ("sequential", "throughput"): {"writethrough": [54.4, 72.4, 98.9, 86.5, 55.8],
                                   "dfuse": [88.4, 117.8, 108.7, 88.4, 57.0]},
    ("random", "latency"): {"writethrough": [1.14, 1.11, 1.11, 1.12, 1.14],
                            "dfuse": [0.68, 0.90, 1.02, 1.10, 1.15]},
    ("sequential", "latency"): {"writethrough": [1.14, 0.86, 0.63, 0.72, 1.10],
                                "dfuse": [0.70, 0.53, 0.57, 0.71, 1.09]},
}

# Fig. 7: fio 50:50 random, 4 nodes, contention 0..100 %. MB/s.
CONTENTION_PCT = [0, 25, 50, 75, 100]
FIG7 = {"writethrough": [55.8, 46.9, 39.3, 31.0, 5.6],
        "dfuse": [60.8, 54.2, 47.4, 37.7, 9.7]}

# Fig. 8: fio 50:50 random, 50 % contention, 2..16 client nodes. MB/s.
NODES = [2, 4, 6, 8, 10, 12, 14, 16]
FIG8 = {"writethrough": [19.6, 39.5, 58.4, 76.2, 91.8, 109.8, 123.3, 138.6],
        "dfuse": [23.2, 47.8, 71.0, 91.0, 109.8, 126.1, 139.4, 150.5]}

# Fig. 9: filebench at 0 % and 100 % contention, the figure's bars (the
# text's fileserver numbers differ; see the research notes). MB/s and ms.
FIG9 = {
    ("fileserver", 0): {"writethrough": (173.8, 90.2), "dfuse": (218.4, 72.2)},
    ("fileserver", 100): {"writethrough": (117.9, 130.0), "dfuse": (172.0, 91.0)},
    ("netsfs", 0): {"writethrough": (106.4, 34.0), "dfuse": (126.1, 28.0)},
    ("netsfs", 100): {"writethrough": (106.1, 35.0), "dfuse": (126.6, 27.0)},
    ("webserver", 0): {"writethrough": (85.2, 38.0), "dfuse": (75.8, 42.0)},
    ("webserver", 100): {"writethrough": (84.3, 38.0), "dfuse": (82.6, 39.0)},
}

# The headline: Fig. 6a/6c, random writes (0:100).
HEADLINE_THROUGHPUT = 91.2 / 54.3 - 1   # +68.0 %
HEADLINE_LATENCY = 0.68 / 1.14 - 1      # -40.4 %
