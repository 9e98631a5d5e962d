"""hierfed on Flower: softmax regression on scikit-learn's digits over domain baskets."""
