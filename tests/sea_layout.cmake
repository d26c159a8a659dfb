# The SEA GPU buffer layouts (attention/sea_layout.h), plain C++: region sizes and disjointness, the weight fragments'
# sizes, which shapes take the tensor-core conv.
seaopt_add_test(NAME test_sea_layout SOURCES test_sea_layout.cpp LABELS cpu)
