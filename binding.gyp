{
  "targets": [
    {
      "target_name": "tsgc_native",
      "sources": [
        "runtime/native/addon.cc",
        "runtime/native/loader.cc",
        "runtime/native/cuda.cc",
        "runtime/native/nvrtc.cc",
        "runtime/native/nccl.cc",
        "runtime/native/cublas.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-ldl"]
    }
  ]
}
